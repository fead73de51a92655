"""The composition: a security layer (Google Cloud) and an application layer (the Docker host),
wired together by the platform. Only this package knows how services connect."""
