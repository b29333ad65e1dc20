"""The step engine: per-task gradients, Gramians and step metrics, one step core for every loop.

``shared`` finds the shared parameters, ``jacobian`` computes the per-task gradients over them,
``gramian`` turns those into Gramians and metrics, ``step`` is the one step core (method-family
dispatch) that ``probe`` (instrument), ``balancer`` (user loops) and the trainer all call;
``device`` and ``distributed`` hold what depends on the hardware and the process group.
"""
