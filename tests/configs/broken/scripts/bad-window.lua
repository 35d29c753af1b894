-- a window with an unknown field
window { every = "hour", metric = "v", agg = "sum", latenes = "1h" }
