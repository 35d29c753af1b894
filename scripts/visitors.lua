-- Visitors per hour for each door, and per day for the whole site
-- (docs/rules.md, section 4).
local hourly = window { every = "hour", metric = "visitors_hourly", agg = "sum",
                        unit = "persons" }
local daily  = window { every = "day", metric = "visitors_daily", agg = "sum",
                        unit = "persons", by = {"site"} }   -- one figure per site

function on_reading(r)
  if r.metric == "visitors_in" then
    hourly:add(r)
    daily:add(r)
  end
end
