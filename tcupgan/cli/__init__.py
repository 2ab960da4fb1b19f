"""The ``tcupgan`` command line: one subcommand per step (``main``), the volunteer-loop commands
(``volunteers``) and the galaxy commands (``galaxy``), each calling the library functions that
``import tcupgan`` exposes."""
