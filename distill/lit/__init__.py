"""The Lightning side: the recognizer and distillation modules, schedules, callbacks and
the train/evaluate routines. Only the entry points import it."""
