"""nbgrader configuration: the repository root is the course directory.

Instructors: `nbgrader generate_assignment autoencoders`, collect submissions into
`submitted/<student>/autoencoders/`, then `nbgrader autograde autoencoders`,
`nbgrader generate_feedback autoencoders` and `nbgrader export`.
"""

c = get_config()  # noqa: F821  (provided by nbgrader when it loads this file)

c.CourseDirectory.course_id = "autoencoders"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.db_assignments = [dict(name="autoencoders")]
# Weights, caches and plots never belong in the release or in feedback.
c.CourseDirectory.ignore = [
    ".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.pth", "*.npz",
]

# Graded runs skip training and load the submitted weights, so cells are short; the
# timeout still leaves room for a slow laptop loading full MNIST and fitting a probe.
c.Execute.timeout = 300
c.Execute.startup_timeout = 120

# Keep feedback readable when a submission prints a lot.
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 60
