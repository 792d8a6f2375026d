"""The augmentation study: does synthetic data help a classifier when real data of one class are scarce?

Per seed (a repeated stratified, duplicate- and subject-aware split), at each scarcity
(`minority_train_counts`), the study trains each generator (`generators`) on the scarce
real minority images, then every classifier (`classifiers`) on every arm (`arms.py`):
scarce real only, classic augmentation (the baseline), real + augmentation + synthetic
images at each synthetic:real ratio, filtered synthetic images, train-on-synthetic, and
all real data. Every arm is tested on the seed's same real test split and compared with
the baseline within the seed (`statistics.py`, `summary.py`); W/study.json and
W/report.md (`report.py`) say what helped, what hurt, and how large an effect the run
could have missed.

The modules, one concept each: `config.py` (StudyConfig), `arms.py`, `statistics.py`,
`quality.py` (the synthetic images' FID, KID, precision, recall, copies), `summary.py`
(study.json), `report.py` (report.md and figures), `run.py` (the loop, resumable per run).
"""

from jaxmed.studies.arms import ALL_REAL, BASELINE, Arm, make_scarce, study_arms
from jaxmed.studies.config import StudyConfig, generative_family_names
from jaxmed.studies.run import run_study, with_minority_class
from jaxmed.studies.statistics import detectable_difference, paired_difference, verdict
from jaxmed.studies.summary import METRICS

__all__ = ["ALL_REAL", "BASELINE", "METRICS", "Arm", "StudyConfig", "detectable_difference",
           "generative_family_names", "make_scarce", "paired_difference", "run_study", "study_arms", "verdict",
           "with_minority_class"]
