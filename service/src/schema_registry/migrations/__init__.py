"""SQL migrations shipped with the release, applied only by `schema-registry migrate`."""
