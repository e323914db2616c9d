"""The model Registry: catalogue, artifacts and discovery (mlaas.v1.RegistryService)."""
