-- Visitors per hour, for each door (docs/rules.md, section 1).
-- The rule sees the doors' visitors_in readings (conf.d: series) and adds
-- them up per local hour; a door with no visitors in an hour reports 0.
window {
  every = "hour",              -- local hours of agent.timezone
  metric = "visitors_hourly",  -- the name of the figure
  agg = "sum",                 -- add up the readings' values
  unit = "persons",
}
