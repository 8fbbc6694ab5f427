"""The ScalingAR engine: settings, the paper's equations, the gate, the guidance scheduler, token sampling,
the per-step records, one step function and the loop that drives a model through it. It knows models only
through :mod:`scalingar_core.models.protocol`."""
