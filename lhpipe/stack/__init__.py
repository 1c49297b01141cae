"""The local stack: real Kafka, LittleHorse, Apicurio and Keycloak on 127.0.0.1, no Docker.

`pins` reads the pinned versions (`versions.toml`), `resolve` fetches them from Maven Central into
the cache, `java` finds the JDKs, `services` configures and probes each service, `process` starts
and stops them by recorded PID, `control` is `up`/`down`/`status`, and `addresses` says where
everything listens. See docs/stack.md.
"""
