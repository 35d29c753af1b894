-- Trail visitors per local day, with the HYTE theme the configuration gives
-- each trail (docs/rules.md, section 8): a HYTE export is then
-- `mittari query --tag theme=healthy-lifestyles`.
window {
  every = "day",
  metric = "trail_visitors",
  agg = "sum",
  by = {"site", "theme"},
  unit = "persons",
}
