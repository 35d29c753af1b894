-- Different welfare-card families per service per month (docs/rules.md,
-- section 7). A family that came twelve times counts once; a figure under
-- 5 leaves as "suppressed below 5", never as the number.
window {
  every = "month",
  metric = "families",
  agg = "distinct",        -- count different subjects (pseudonyms), not readings
  by = {"service"},        -- one figure per service (a tag of the check-ins)
  lateness = "1d",         -- a reader offline for a night still counts
}
