-- A monthly user-flow matrix (docs/rules.md, section 9): per service the
-- different families of the month, and for every pair of services A, B the
-- families who used both. Every cell is suppressed under 5.
state_version = 1

window {
  every = "month",
  metric = "families",
  agg = "distinct",
  by = {"service"},
  flows = "families_also",   -- cells tagged service = A, also = B
  lateness = "1d",
}
