"""Cost: profiler, hardware profiles and ceilings, roofline projection, scaling, planner."""
