"""Floor 3: what a result reports: TP/FN/FP/TN, ROC, AUC, TPR at low FPR, the paper and
strict target sets, 95% intervals over seeds, figures. Plain numpy over any scores."""
