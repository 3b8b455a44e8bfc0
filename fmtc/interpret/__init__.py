"""Interpretation of a run's fold models with integrated gradients (captum).

The paper explains FMM_TC's behaviour across datasets with integrated gradients (IG,
Sundararajan et al., ICML 2017): "dynamic modality reliance". This package attributes the
responder evidence of each fold's own model (``logit_1 - logit_0``, averaged over a
subject's windows as the prediction is) to

- the two halves of the fused representation, TS (BrainLM features) and FC (ResNet-18
  embedding): each subject's TS share (:func:`~fmtc.interpret.attribution.modality_attributions`);
- the R x R connectivity matrix (:func:`~fmtc.interpret.attribution.fc_attributions`);
- the input time-series window, through the frozen BrainLM encoder
  (:func:`~fmtc.interpret.attribution.ts_attributions`);

then aggregates them to regions, atlas networks and, for simulated cohorts, the recovery
of the planted truth (:mod:`fmtc.interpret.aggregate`). Baselines: :mod:`fmtc.interpret.baselines`.
``fmtc interpret --run RUN_DIR`` (:func:`fmtc.pipeline.interpret_run`) runs all of it.
"""
