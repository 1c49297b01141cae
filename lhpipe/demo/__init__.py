"""The demo: the example pipelines running against the local stack (``lhpipe demo``).

:mod:`lhpipe.demo.cli` is the command; :mod:`lhpipe.demo.workflows` the LittleHorse metadata
and task functions the examples need; :mod:`lhpipe.demo.worker` runs the task worker;
:mod:`lhpipe.demo.secrets` holds the demo-only secret values; :mod:`lhpipe.demo.standins` serves
the loopback CRM and partner API the examples call; :mod:`lhpipe.demo.requests` builds
authenticated webhook requests; :mod:`lhpipe.demo.guide` prints the instructions;
:mod:`lhpipe.demo.wfruns` shows WfRuns.
"""
