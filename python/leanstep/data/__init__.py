"""From a Lean project to a fine-tuned suggestion model.

* :mod:`leanstep.data.steps`: (goals before, tactic, goals after) steps read off the REPL's info tree;
* :mod:`leanstep.data.extract`: ``leanstep extract``, which runs Lean files on the REPL pool and writes
  one JSON record per tactic step, with its training prompt;
* :mod:`leanstep.data.finetune`: ``leanstep finetune``, which trains a causal or seq2seq model on those
  records and saves one that ``leanstep serve --hf-model DIR`` loads as it is.

Only ``finetune`` imports torch and transformers, and only when it runs.
"""
