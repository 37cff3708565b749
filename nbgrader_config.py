"""nbgrader configuration: the repository root is the course directory.

Instructors: `nbgrader generate_assignment autoencoders`, collect submissions into
`submitted/<student>/autoencoders/`, then `nbgrader autograde autoencoders`,
`nbgrader generate_feedback autoencoders` and `nbgrader export`.
"""

c = get_config()  # noqa: F821  (provided by nbgrader when it loads this file)

c.CourseDirectory.course_id = "autoencoders"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
# nbgrader copies these patterns nowhere (not into the release, not from submissions).
# Weights (*.pth) must travel from submissions into the autograded copy, so they are not
# listed here; reference weights live in reference/ (make weights), never in solutions/.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]
# Never overwrite a student's weights with a file of the same name from solutions/
# (the weight files of each assignment come from the course manifest).
from autograder import manifest  # noqa: E402

c.Autograde.exclude_overwriting = {a: list(manifest.weight_files(a)) for a in manifest.assignments()}


def _refuse_weights_in_source():
    """Reference weights in solutions/ would be handed out with the release."""
    import pathlib
    import sys

    if "generate_assignment" not in sys.argv[1:2] and "assign" not in sys.argv[1:2]:
        return
    here = pathlib.Path(__file__).resolve().parent / "solutions"
    found = sorted(str(p.relative_to(here)) for p in here.glob("*/*.pth"))
    if found:
        raise SystemExit(
            f"nbgrader_config.py: refusing to release: {', '.join(found)} in {here} would be "
            f"copied into the student release. Move them to reference/ (make weights keeps "
            f"reference weights there) and run the command again.")


_refuse_weights_in_source()

# Graded runs skip training and load the submitted weights, so cells are short; the
# timeout still leaves room for a slow laptop loading full MNIST and fitting a probe.
c.Execute.timeout = 300
c.Execute.startup_timeout = 120

# `nbgrader zip_collect ASSIGNMENT` (files downloaded from a learning platform, put in
# downloaded/ASSIGNMENT/archive/): collect the weights with the notebooks, and read the student id
# from the folder that holds each file (.../<student_id>/ae.ipynb). Adapt the regular expression
# to your platform's file names: it needs the groups student_id and file_id (README).
c.FileNameCollectorPlugin.valid_ext = [".ipynb", ".pth"]
c.FileNameCollectorPlugin.named_regexp = r".*/(?P<student_id>[^/]+)/(?P<file_id>[^/]+)$"

# Keep feedback readable when a submission prints a lot.
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 60

# Student kernels run in a bubblewrap sandbox with resource limits; a crash or hang fails only
# the cells it prevented; stderr noise costs no points (docs/security.md, docs/reliability.md).
# Sandbox settings: c.Sandbox.memory_limit, cpu_time_limit, max_processes, ... (see there).
from autograder.grading.pipeline import configure  # noqa: E402

configure(c)
