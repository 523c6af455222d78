"""Jobs: plan ranks, ship a cell, watch it, collect, cancel."""
