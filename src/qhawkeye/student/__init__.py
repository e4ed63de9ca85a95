"""Students: fast CPU quality scorers distilled from a teacher's scores and/or human labels.

A student is a ridge head on pooled EfficientNet-Lite0 features (:mod:`.features`, :mod:`.head`), scored
through the same interface as the VLM (:mod:`.scorer`), trained by ``qhawkeye distill`` (:mod:`.distill`).
The embedded default (``DEFAULT_STUDENT``, the model ``qhawkeye score`` uses without ``--model``) is a
student fitted on the 700 LIVE-Wild images with their human scores; ``scripts/build_default_student.py``
rebuilds it and its ``NOTICE`` carries the database's licence.
"""

from pathlib import Path

DEFAULT_STUDENT = Path(__file__).resolve().parent / "default"
DEFAULT_NAME = "default"


def student_folder(name_or_path: str) -> Path | None:
    """The student folder ``name_or_path`` names ("default" or a folder with student.json), else None."""
    if name_or_path == DEFAULT_NAME:
        return DEFAULT_STUDENT
    path = Path(name_or_path).expanduser()
    return path if (path / "student.json").is_file() else None
