"""What the lab asks the models and how their answers are graded: the curriculum (task families, the
seed tutorial's prompts and tools) and the graders.
"""
