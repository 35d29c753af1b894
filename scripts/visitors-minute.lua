-- Visitors per minute, for each door: the demo's quick figure (conf.d/40-rules.yaml),
-- so that figures appear a minute after the demo starts. A quiet minute is 0.
window {
  every = "minute",
  metric = "visitors_minute",
  agg = "sum",
  unit = "persons",
  forget_after = "1h",   -- a door quiet for an hour stops reporting 0s (until it reports again)
}
