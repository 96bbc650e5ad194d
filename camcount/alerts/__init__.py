"""Alert rules over what the aggregators produce: occupancy, flow per
window, a camera's state and the distance from the forecast, each opened
and resolved in event time so a replay raises the same alerts."""
