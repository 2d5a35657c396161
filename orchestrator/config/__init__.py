"""Configuration: settings from the environment and the TOML file, the accounts' tables, and the
rules both obey."""
