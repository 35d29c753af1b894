-- Mean smiley score per area and local day (docs/rules.md, section 8).
-- The area comes from the configuration (tags: area: {site/device glob: area}).
-- A mean of fewer than 5 answers is withheld.
window {
  every = "day",
  metric = "feedback_mean",
  agg = "mean",
  by = {"area"},
  suppress = 5,
}
window {
  every = "day",
  metric = "feedback_answers",
  agg = "count",
  by = {"area"},
  suppress = 5,
}
