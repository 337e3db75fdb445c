"""The params.yaml schema, one module per top-level section (``data``, ``train``, ``export``,
``cim``, ``evaluate``, ``report``); a method's section lives in its own subpackage
(``cimflow.compress.admm.params``). cimflow.config assembles them into the whole file.

Kept apart so that a stage's code fingerprint (cimflow.fingerprint) holds the schemas
of the sections it reads and no others: a new section reruns no existing stage.
"""
