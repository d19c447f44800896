-- Reserved for the search migration, which replaces this file.
SELECT 1;
