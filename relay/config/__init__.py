"""relay.yaml: the model (model.py, types.py), loading it with FILE:LINE errors (load.py,
source.py, interpolate.py), durations, the storage URL (storage.py), route regexes on RE2
(regex.py) and the JSON Schema.

This package's `__init__` imports nothing, so that the integrations' config models
(relay/integrations/*/config.py) can build on relay/config/types.py without a cycle;
import from the modules themselves.
"""
