"""Hardware profiles: the TOML description of one board and one PLC, parsed into frozen data
(``agent.model.profile``).

    load.load_profile(ref: str | Path | None) -> Profile              read + parse (None: sim-tank)
    load.list_profiles() -> list[str]                                  shipped profile names
    load.with_connection(profile, *, tcp=None, rtu=None) -> Profile     override the PLC link
    parse.parse_profile(data: Mapping[str, Any], source: str) -> Profile  the pure parser
    registers                                                           register layout checks

Every failure raises ``agent.model.errors.ProfileError`` listing all problems found. The key
by key documentation of the format is ``hw_profiles/README.md``.
"""
