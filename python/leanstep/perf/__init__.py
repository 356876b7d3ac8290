"""Performance planning: the trace ``leanstep serve --trace FILE`` records, and ``leanstep plan`` over it."""
