-- People inside, per site, from the doors' in/out counts (docs/rules.md,
-- section 6): a gauge after every pass, zero at the start of each local
-- day, and the day's peak.
local peak = window { every = "day", metric = "occupancy_peak", agg = "max",
                      by = {"site"}, unit = "persons" }

state.inside = state.inside or {}    -- site -> people inside now
state.day = state.day or {}          -- site -> the local day they were counted on

function on_reading(r)
  if r.metric ~= "visitors_in" and r.metric ~= "visitors_out" then
    return
  end
  local day = period("day", r.ts)    -- "2026-11-25": the local day of the reading
  if state.day[r.site] ~= day then   -- a new day: the building was empty at night
    state.day[r.site], state.inside[r.site] = day, 0
  end
  local n = state.inside[r.site]
  if r.metric == "visitors_in" then n = n + r.value else n = math.max(0, n - r.value) end
  state.inside[r.site] = n
  emit { metric = "occupancy", value = n, kind = "gauge", unit = "persons",
         device = "all-doors" }
  peak:add(r, n)
end
