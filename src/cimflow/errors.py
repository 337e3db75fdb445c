"""The base of every error caused by user input (params, data files, artifacts).

The CLI turns these into one message and exit status 2; anything else is a bug and
keeps its traceback.
"""


class CimflowError(RuntimeError):
    """Bad input: the message names the file or key and what is wrong."""


class ParamsError(CimflowError):
    """params.yaml is missing, unparsable or invalid; the message says where and why."""
