window { every = "hour", metric = "v", agg = "sum" }
