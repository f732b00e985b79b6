"""Analysis: pure functions over results, below the stages that write them and the report.

``claims`` judges the paper's three claims from a results dict (the verdict rules);
``frontier`` turns a results dict into privacy-utility points; ``plots`` draws the figures
(ROC, attribute bars, frontier) from arrays and rows; ``names`` holds the results' names of the
paper's models and attacks. Imported by the stages (the results writer, the attack stages'
figures), the report and W&B logging; imports nothing of the package but itself.
"""
