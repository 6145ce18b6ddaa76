"""The job: config validation into parts, the stage graph, evaluation, iterative rounds."""
