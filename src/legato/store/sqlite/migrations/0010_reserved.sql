-- Number 10 is another change's; this stands in for it until that change is merged.
SELECT 1;
