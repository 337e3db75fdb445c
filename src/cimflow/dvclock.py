"""Record in dvc.lock what Snakemake has finished, so one store serves both front ends.

A Snakemake run writes no lock, so DVC would list every stage as changed and `dvc repro`
would rerun the whole DAG. Snakemake decides which of its jobs are current (its rerun
triggers: mtime, params, inputs, code); each dvc.yaml stage whose job it would not rerun
is committed (`dvc commit --force`: its deps' and outs' hashes go into dvc.lock and its
outputs into the cache, ready for `dvc push`). A job Snakemake would rerun stays as it was
in the lock, so DVC reruns it too. The Snakefile calls this after every successful run.
"""

from __future__ import annotations

from pathlib import Path

from cimflow.dvcgen import FINGERPRINT_STAGE, snakemake_current


def commit_current(root: Path = Path(".")) -> list[str] | None:
    """Commit the stages Snakemake considers current; return their names, sorted, or None
    where ``root`` is no DVC repository inside git (a copy without .git: nothing to record)."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo
    from dvc.scm import SCMError

    try:
        repo = Repo(str(root))
    except (NotDvcRepoError, SCMError):
        return None
    with repo:
        current = snakemake_current(root / "Snakefile") | {FINGERPRINT_STAGE}  # Snakemake refreshed it on parse
        stages = [stage for stage in repo.index.stages if stage.name in current]
        with repo.lock:
            for stage in stages:
                stage.save()
                stage.commit()
            for dvcfile in {stage.dvcfile.path: stage.dvcfile for stage in stages}.values():
                dvcfile.dump_stages([s for s in stages if s.dvcfile.path == dvcfile.path], update_pipeline=False)
    return sorted(stage.name for stage in stages)
