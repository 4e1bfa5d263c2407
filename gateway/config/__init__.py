"""Gateway configuration: YAML source with line numbers, typed schema, two-step loader."""

from gateway.config.loader import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    PACKAGED_DEFAULTS,
    GatewayConfig,
    ModelSpec,
    default_config_path,
    load_config,
    load_server_config,
    parse_config,
    server_url,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "PACKAGED_DEFAULTS",
    "GatewayConfig",
    "ModelSpec",
    "default_config_path",
    "load_config",
    "load_server_config",
    "parse_config",
    "server_url",
]
