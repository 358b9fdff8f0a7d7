"""bench.endpoint_study scores the rule that ships through pipeline/endpointing.py, with the config's thresholds."""

from bench.endpoint_study import evaluate, rule_configured
from pipeline.config import VadConfig

CONFIGURED = "configured (pipeline/endpointing.py)"


def moment(text: str, end_logprob: float, p: float, tier: str = "sure") -> dict:
    return {"text": text, "end_logprob": end_logprob, "p": p, "tier": tier, "is_speech": True,
            "end_probability": -1.0}


def test_the_configured_rule_is_the_pipelines():
    vad = VadConfig(turn_model_sure_probability=0.9)  # hold 750, max 1000
    assert rule_configured(moment("Votre mot de passe a été changé.", -0.2, 0.8), vad) == 0
    assert rule_configured(moment("Votre mot de passe a été changé.", -0.5, 0.95), vad) == 0  # Smart Turn sure
    assert rule_configured(moment("Votre mot de passe a été changé.", -0.5, 0.8), vad) == 750
    assert rule_configured(moment("Votre mot de passe a été changé.", -0.2, 0.1), vad) == 750
    assert rule_configured(moment("La conférence est maintenant...", -0.2, 0.99), vad) == 1000  # trails off
    assert rule_configured(moment("Votre mot de passe a été changé.", -0.5, 0.95),
                           VadConfig()) == 750  # off by default


def test_split_share_and_ends_at_the_verdict_follow_the_thresholds():
    rows = [{"end": moment("Votre mot de passe a été changé.", -0.5, 0.95, "unsure"),
             "cut": moment("Votre mot de passe.", -0.5, 0.95, "unsure")},
            {"end": moment("Cette conférence est pleine.", -0.2, 0.9),
             "cut": moment("Cette conférence est", -0.2, 0.9, "unfinished")}]
    now = evaluate(rows, VadConfig(turn_model_sure_probability=0.9))[CONFIGURED]
    assert now["ends_at_verdict_pct"] == 100.0 and now["hesitations_split_pct"] == 50.0  # one cut closes at once
    held = evaluate(rows, VadConfig())[CONFIGURED]
    assert held["ends_at_verdict_pct"] == 50.0 and held["hesitations_split_pct"] == 0.0  # 750 ms > any 500-700 ms pause
