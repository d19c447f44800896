-- Reserved for the run operations migration, which replaces this file.
SELECT 1;
