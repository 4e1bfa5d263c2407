"""HTTP routes. Thin: they translate between HTTP and the gateway, nothing more."""
