window {
  every = "hour"
  metric = "v" }
