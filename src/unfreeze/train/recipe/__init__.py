"""What the recommended recipe decides from the data before it trains (issue 27).

- plan.py: `TrainingPlan`, the batch size, epochs and passes per epoch from the number of training
  images, measured in optimizer steps (`plan_training`);
- probe.py: `fit_linear_probe`, the head fitted on the frozen body's cached features (few images);
- imbalance.py: `check_imbalance` from the training counts and `LogitAdjustedLoss` (Menon et al. 2021);
- noise.py: `check_noise` (label smoothing when a cross-validated probe disagrees with many labels) and
  `disagreements`, the training images the model most disagrees with.

`recommended.fit_recipe` runs them; `recipe_settings.Recipe` holds their settings ("auto" by default).
"""
