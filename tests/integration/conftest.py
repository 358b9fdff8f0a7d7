import pytest

from tests.integration.harness import PipelineProcess


@pytest.fixture
def start_pipeline(run_dir):
    started: list[PipelineProcess] = []

    def start(config: dict, *args: str) -> PipelineProcess:
        pipeline = PipelineProcess(run_dir, config, *args)
        started.append(pipeline)
        return pipeline

    yield start
    for pipeline in started:
        pipeline.stop()
