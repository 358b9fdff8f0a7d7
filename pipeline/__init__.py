"""LUXA speech front end: the library shared by every stage and the supervisor."""
