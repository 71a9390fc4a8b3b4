"""Local tooling of crmsync, not deployed: the `crmsync` CLI, the local AWS stack, the CRM emulators."""
