"""Studies: APMPO vs GRPO / DAPO / GMPO and its ablations over paired seeds, above the trainer.

- :mod:`apmpo.study.config`: the study settings (arms, seeds, warm-up, report);
- :mod:`apmpo.study.runs`: planning each run's training config, its status, reading results;
- :mod:`apmpo.study.runner`: :func:`run_study`, training the pending runs (a worker pool);
- :mod:`apmpo.study.warmup`: the supervised warm-up of a model trained from scratch;
- :mod:`apmpo.study.report`: tables, curves and results.md; :mod:`apmpo.study.stats`: the statistics;
- :mod:`apmpo.study.cli`: ``apmpo study``.
"""
