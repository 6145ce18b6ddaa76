"""Pipeline stages: each builds one artifact directory from upstream artifact directories."""
