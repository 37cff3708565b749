"""The instructor command line, one module per verb, each with ``main(argv)``:

    python -m autograder weights [NOTEBOOK ...]   # train the reference models (make weights)
    python -m autograder demo                     # release, train, grade demo students (make demo)
    python -m autograder calibrate NOTEBOOK       # calibrate the pass bars (docs/calibration.md)
    python -m autograder failures                 # list the failed gradings of a course
"""
