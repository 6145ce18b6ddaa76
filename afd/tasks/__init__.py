"""Tasks (`data=`): the synthetic task, HH-RLHF and user JSONL files, their rows and data
artifacts, and the gold judges (`gold=`) that score replies."""
