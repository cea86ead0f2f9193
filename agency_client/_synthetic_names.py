"""Constant tables for the synthetic demo population: names, nicknames, streets, districts.

Lists are in rough descending order of frequency; the generator weights them by
rank (Zipf-like). Nothing here describes a real person or a real address; the
tables only have to look plausible for English cities. Never use them to
normalise or match real data: the matcher must not learn the generator's tables.
"""

from __future__ import annotations

# Forenames by cultural background, sex and generation ("old": adults born
# before about 1990; "young": children and young adults). Most common first.
BRITISH_M_OLD = tuple(
    """
    David John Paul Mark James Andrew Michael Richard Steven Robert Christopher Peter
    Ian Stephen Gary Anthony Darren Simon Lee Daniel Matthew Martin Neil Thomas Craig
    Kevin Jason William Stuart Dean Wayne Philip Jonathan Adam Carl Nicholas Alan Graham
    Shaun Colin Keith Brian Barry Trevor Kenneth Raymond Terence Geoffrey Roger Malcolm
    Derek Gordon Dennis Ronald Leonard Gerald Patrick Francis Timothy Gregory Edward
    Russell Scott Jamie Ryan Ben Luke Karl Liam Nathan Joseph Samuel Benjamin Alexander
    Dominic Justin Glenn Lawrence Marcus Aaron Ashley Sean Wesley Clive Nigel Howard
    Charles Frederick Gavin Damian Jeremy Warren Lloyd Duncan Vincent Roy Norman Eric
    """.split()
)
BRITISH_M_YOUNG = tuple(
    """
    Oliver George Harry Jack Noah Charlie Jacob Alfie Freddie Oscar Leo Archie Henry
    Joshua Thomas William James Ethan Isaac Arthur Theodore Lucas Max Logan Mason
    Daniel Samuel Alexander Joseph Dylan Riley Harrison Edward Jake Finley Tommy Toby
    Louie Reggie Teddy Sebastian Benjamin Jayden Kai Frankie Ronnie Tyler Callum Kyle
    Lewis Jamie Ryan Connor Bradley Matthew Luke Nathan Liam Zachary Gabriel Elijah
    Albie Stanley Hugo Rory Ellis Caleb Jenson Bobby Jaxon Ollie Hunter Nathaniel Michael
    Brandon Declan Owen Aiden Harvey Kian
    """.split()
)
BRITISH_F_OLD = tuple(
    """
    Sarah Claire Emma Nicola Lisa Joanne Karen Michelle Helen Rachel Louise Julie
    Susan Amanda Donna Tracey Kelly Samantha Deborah Jennifer Elizabeth Catherine
    Katherine Victoria Rebecca Alison Jacqueline Angela Dawn Gemma Natalie Stephanie
    Margaret Patricia Christine Linda Janet Carol Jane Ann Anne Mary Pauline Sandra
    Gillian Wendy Diane Lorraine Andrea Caroline Kerry Leanne Kirsty Hayley Zoe Zoë
    Laura Amy Charlotte Jessica Hannah Lauren Danielle Jodie Stacey Kimberley Melanie
    Alexandra Abigail Heather Sharon Paula Beverley Maria Teresa Josephine Theresa
    Lindsey Debbie Sally Fiona Joanna Eleanor Renée Chloë Siobhan Tanya Vanessa Yvette
    Marie Lynne Shirley Barbara Joyce Brenda Valerie
    """.split()
)
BRITISH_F_YOUNG = tuple(
    """
    Olivia Amelia Isla Ava Mia Ivy Lily Isabella Rosie Sophia Grace Freya Willow
    Florence Emily Ella Poppy Evie Elsie Charlotte Evelyn Sienna Sofia Daisy Phoebe
    Sophie Alice Harper Matilda Ruby Emilia Maya Millie Isabelle Eva Luna Jessica
    Erin Holly Chloe Megan Lucy Ellie Katie Paige Molly Leah Amber Niamh Jasmine
    Scarlett Lola Layla Esme Darcie Imogen Aria Hallie Mila Bonnie Maisie Violet Lexi
    Summer Abigail Hannah Georgia Caitlin Eleanor Victoria Elizabeth Rebecca Zoë Chloë
    """.split()
)
SOUTH_ASIAN_M = tuple(
    """
    Mohammed Muhammad Ali Ahmed Hassan Imran Adam Ibrahim Yusuf Bilal Zain Ayaan Omar
    Hamza Abdullah Usman Tariq Asif Arif Shahid Zahid Khalid Nadeem Faisal Sajid Rizwan
    Amir Kamran Waqas Junaid Zubair Mehmood Raza Aryan Rayan Harjit Gurpreet Sandeep
    Rajesh Sanjay Vijay Amit Ravi Arjun Rohan Dev Krishna Harvinder Jaspal Manjit
    Abdul Shafiq Iqbal Nasir Javed Aftab Shahzad Haris Musa Eesa Zakariya Idris
    """.split()
)
SOUTH_ASIAN_F = tuple(
    """
    Fatima Aisha Ayesha Maryam Zainab Khadija Amina Hafsa Sana Nadia Samina Shazia
    Rubina Nasreen Parveen Shabana Nazia Farzana Sadia Saima Rukhsana Yasmin Salma
    Noor Inaya Anaya Zara Sara Sumaiya Safiya Hana Iqra Mehwish Amna Alisha Ruksana
    Priya Anjali Pooja Neha Sunita Meena Harpreet Manpreet Simran Jaspreet Kiran
    Rajinder Gurdeep Shamima Nazma Rehana Jasmin Habiba Halima Asma Tahira
    """.split()
)
POLISH_M = tuple(
    """
    Piotr Krzysztof Tomasz Paweł Michał Marcin Łukasz Jakub Kamil Mateusz Adam Marek
    Grzegorz Andrzej Dariusz Sebastian Bartosz Damian Wojciech Rafał Szymon Filip
    Aleksander Jan Antoni Ionut Andrei Mihai Florin Darius Tomas Mantas Jonas Lukas
    """.split()
)
POLISH_F = tuple(
    """
    Anna Katarzyna Agnieszka Małgorzata Magdalena Joanna Monika Ewa Aleksandra Natalia
    Karolina Justyna Paulina Marta Dorota Beata Zuzanna Julia Maja Zofia Hanna Lena
    Oliwia Ioana Elena Andreea Alina Gabriela Ruta Egle Ieva Laura
    """.split()
)
AFRICAN_M = tuple(
    """
    Oluwaseun Chukwuemeka Emeka Chinedu Adebayo Olumide Oluwatobi Tunde Segun Ibrahim
    Kwame Kofi Kwabena Yaw Samuel Daniel Emmanuel Joseph David Michael Abdi Abdirahman
    Mohamed Ahmed Hassan Mustafa Tendai Tafadzwa Blessing Precious Godfrey Chidi Obinna
    Ikenna Babajide Femi Kayode Musa
    """.split()
)
AFRICAN_F = tuple(
    """
    Chioma Ngozi Adaeze Funmilayo Folake Oluwakemi Temitope Blessing Precious Grace
    Esther Deborah Abena Akosua Ama Adwoa Efua Fatuma Hodan Amina Sagal Hibo Ifrah
    Nyasha Rutendo Tsitsi Chipo Zanele Thandiwe Nneka Ifeoma Ebere Amara Adaora Yetunde
    """.split()
)
CARIBBEAN_M = tuple(
    """
    Marcus Andre Tyrone Jermaine Delroy Leroy Winston Clinton Errol Desmond Devon
    Kemar Jamal Darnell Tremaine Courtney Rohan Junior Nathaniel Isaiah Elijah Malachi
    Josiah Kyrie Reuben
    """.split()
)
CARIBBEAN_F = tuple(
    """
    Shanice Tanisha Keisha Latoya Marcia Beverley Yvonne Janice Paulette Sonia Simone
    Chantelle Shantelle Kezia Tiana Jada Nia Imani Aaliyah Ebony Jasmine Naomi Leah
    Esther Ruth
    """.split()
)

# Family names. British list in descending frequency (top entries follow the
# published ONS surname ranks for England and Wales; the tail is illustrative).
BRITISH_SURNAMES = tuple(
    """
    Smith Jones Williams Taylor Brown Davies Evans Wilson Thomas Johnson Roberts
    Robinson Thompson Wright Walker White Edwards Hughes Green Hall Lewis Harris Clarke
    Patel Jackson Wood Turner Martin Cooper Hill Ward Morris Moore Clark Lee King Baker
    Harrison Morgan Allen James Scott Phillips Watson Davis Parker Price Bennett Young
    Griffiths Mitchell Kelly Cook Carter Richardson Bailey Collins Bell Shaw Murphy
    Miller Cox Richards Khan Marshall Anderson Simpson Ellis Adams Singh Begum Wilkinson
    Foster Chapman Powell Webb Rogers Gray Mason Ali Hunt Hussain Campbell Matthews
    Owen Palmer Holmes Mills Barnes Knight Lloyd Butler Russell Barker Fisher Stevens
    Jenkins Murray Dixon Harvey Graham Pearson Ahmed Fletcher Walsh Kaur Gibson Howard
    Andrews Stewart Elliott Reynolds Saunders Payne Fox Ford Pearce Day Brooks West
    Lawrence Cole Atkinson Bradley Spencer Gill Dawson Ball Burton O'Brien Watts Rose
    Booth Perry Ryan Grant Wells Armstrong Francis Rees Hayes Hart Hudson Newman Barrett
    Webster Hunter Gregory Carr Lowe Page Marsh Riley Dunn Woods Parsons Berry Stone
    Reid Holland Hawkins Harding Porter Robertson Newton Oliver Reed Kennedy Williamson
    Bird Gardner Shah Dean Lane Cooke Bates Henderson Parry Burgess Bishop Walton
    Burns Nicholson Shepherd Ross Cross Long Freeman Warren Nicholls Hamilton Byrne
    Sutton McDonald Yates Hodgson Robson Curtis Hopkins O'Connor Harper Coleman Watkins
    Moss McCarthy Chambers O'Neill Griffin Sharp Hardy Wheeler Potter Osborne Johnston
    Gordon Doyle Wallace George Jordan Hutchinson Rowe Burke May Pritchard Gilbert
    Willis Higgins Read Miles Stevenson Stephenson Hammond Arnold Buckley Walters
    Hewitt Barber Nelson Slater Austin Sullivan Whitehead Mann Frost Lambert Stephens
    Blake Akhtar Lynch Goodwin Barton Woodward Thomson Cunningham Quinn Barnett Baxter
    Bibi Clayton Nash Greenwood Jennings Holt Kemp Poole Gallagher Bond Stokes Tucker
    Davidson Fowler Heath Norman Middleton Lawson Banks French Stanley Jarvis Gibbs
    Ferguson Hayward Carroll Douglas Hicks Fuller Dickinson Fraser Lord Duncan Waters
    Hobbs Summers Steele Bryant Houghton Dyer Kirby Hurst Rahman Lucas Field
    Wade Hilton Pickering Sykes Haigh Brook Greenhalgh Ackroyd Priestley Sutcliffe
    Hirst Firth Crowther Haworth Horsfall Holroyd Ainsworth Barraclough
    Whiteley Pollard Dobson Lister Metcalfe Naylor Wainwright Briggs Lockwood Brearley
    Rhodes Wilde Howarth Kershaw Ashworth Ogden Schofield Butterworth Hargreaves
    Duckworth Entwistle Fielding Fairclough Pilling Riding Critchley Unsworth Bradshaw
    Cartwright Bagley Tonks Bayliss Hickman Whitehouse Southall Perkins Pugh Hadley
    Hackett Ashby Bourne Bowen Hyde Grainger Timms Cadbury Nock Sharples Platt Blackburn
    Brennan Doherty Flynn Keane Maguire McGuire Nolan O'Reilly O'Sullivan Quigley
    Regan Sheridan Sweeney Brady Casey Connolly Daly Duffy Farrell Hogan Kavanagh
    MacDonald McKenzie McLean Mackay Cameron Sinclair Munro Fleming Paterson Kerr Boyle
    Dempsey Lyons Hanson Vickers Thornton Kirk Gould Ingram Chadwick Marriott Oakley
    Peacock Swift Warner Whittaker Winter Coates Hartley Tyler Leach Lees Rowley Nixon
    Garner Barlow Bentley Birch Bolton Bowden Hale Kay Lamb Moran Parkinson Rowland
    """.split()
)
SOUTH_ASIAN_SURNAMES = tuple(
    """
    Khan Ahmed Ali Hussain Begum Patel Akhtar Shah Iqbal Mahmood Rahman Mohammed Bibi
    Malik Hussein Sharif Butt Qureshi Aslam Mirza Rashid Saleem Javed Anwar Latif
    Bashir Karim Yousaf Siddiqui Chaudhry Islam Miah Uddin Choudhury Hoque Kaur Singh
    Sandhu Sidhu Gill Dhillon Bains Sharma Kumar Mistry Parmar Lad Chauhan Desai Joshi
    Mehta Shaikh Rehman Nawaz Riaz Tahir Zaman Haq Ashraf Arshad Ismail Raja Bi
    """.split()
)
POLISH_SURNAMES = tuple(
    """
    Nowak Kowalski Kowalska Wiśniewski Wiśniewska Wójcik Kowalczyk Kamiński Kamińska
    Lewandowski Lewandowska Zieliński Zielińska Szymański Woźniak Dąbrowski Kozłowski
    Jankowski Mazur Kwiatkowski Krawczyk Piotrowski Grabowski Pawłowski Michalski
    Popescu Ionescu Popa Constantin Stan Dumitru Kazlauskas Jankauskas Petrauskas
    """.split()
)
AFRICAN_SURNAMES = tuple(
    """
    Okafor Okonkwo Adeyemi Adebayo Okeke Eze Nwosu Obi Oyelaran Ogunleye Olawale Balogun
    Mensah Boateng Owusu Asante Osei Agyeman Appiah Addo Mohamed Hassan Abdi Ahmed Ali
    Farah Warsame Moyo Ncube Dube Sibanda Mutasa Chukwu Nwachukwu Ibekwe Afolabi Bello
    Danjuma Ogunbiyi
    """.split()
)

# Informal forms seen instead of the formal given name. Canonical -> nicknames.
NICKNAMES: dict[str, tuple[str, ...]] = {
    "William": ("Bill", "Will", "Billy", "Liam"),
    "Robert": ("Rob", "Bob", "Bobby", "Robbie"),
    "Richard": ("Rich", "Rick", "Richie", "Dick"),
    "James": ("Jim", "Jimmy", "Jamie"),
    "Thomas": ("Tom", "Tommy"),
    "Michael": ("Mike", "Mick", "Mikey"),
    "Christopher": ("Chris", "Kit"),
    "Matthew": ("Matt",),
    "Daniel": ("Dan", "Danny"),
    "Anthony": ("Tony", "Ant"),
    "Joseph": ("Joe", "Joey"),
    "Samuel": ("Sam", "Sammy"),
    "Benjamin": ("Ben", "Benji"),
    "Alexander": ("Alex", "Xander"),
    "Nicholas": ("Nick", "Nicky"),
    "Stephen": ("Steve", "Stevie"),
    "Steven": ("Steve", "Stevie"),
    "Andrew": ("Andy", "Drew"),
    "David": ("Dave", "Davy"),
    "Edward": ("Ed", "Eddie", "Ted"),
    "Jonathan": ("Jon", "Jonny"),
    "John": ("Jack", "Johnny"),
    "Charles": ("Charlie", "Chas"),
    "Henry": ("Harry", "Hal"),
    "Oliver": ("Ollie", "Olly"),
    "Joshua": ("Josh",),
    "Jacob": ("Jake",),
    "Nathan": ("Nate",),
    "Nathaniel": ("Nate", "Nat"),
    "Zachary": ("Zac", "Zack"),
    "Terence": ("Terry",),
    "Raymond": ("Ray",),
    "Ronald": ("Ron", "Ronnie"),
    "Kenneth": ("Ken", "Kenny"),
    "Leonard": ("Len", "Lenny"),
    "Lawrence": ("Larry", "Laurie"),
    "Gerald": ("Gerry",),
    "Timothy": ("Tim", "Timmy"),
    "Peter": ("Pete",),
    "Philip": ("Phil",),
    "Gregory": ("Greg",),
    "Patrick": ("Pat", "Paddy"),
    "Francis": ("Frank", "Frankie"),
    "Dominic": ("Dom",),
    "Theodore": ("Theo", "Teddy"),
    "Sebastian": ("Seb",),
    "Frederick": ("Fred", "Freddie"),
    "Mohammed": ("Mo",),
    "Muhammad": ("Mo",),
    "Oluwaseun": ("Seun",),
    "Oluwatobi": ("Tobi",),
    "Chukwuemeka": ("Emeka",),
    "Babajide": ("Jide",),
    "Aleksander": ("Olek",),
    "Krzysztof": ("Krzys",),
    "Catherine": ("Kate", "Cathy", "Katie"),
    "Katherine": ("Kate", "Kathy", "Katie"),
    "Elizabeth": ("Liz", "Beth", "Lizzie", "Betty"),
    "Margaret": ("Maggie", "Peggy", "Meg"),
    "Jennifer": ("Jenny", "Jen"),
    "Rebecca": ("Becky", "Becca"),
    "Victoria": ("Vicky", "Tori"),
    "Samantha": ("Sam", "Sammie"),
    "Deborah": ("Debbie", "Debs"),
    "Susan": ("Sue", "Susie"),
    "Patricia": ("Pat", "Trish", "Tricia"),
    "Charlotte": ("Charlie", "Lottie"),
    "Isabella": ("Bella", "Izzy"),
    "Isabelle": ("Izzy", "Belle"),
    "Abigail": ("Abi", "Abby"),
    "Amelia": ("Millie", "Amy"),
    "Emily": ("Em", "Emmy"),
    "Eleanor": ("Ellie", "Nell"),
    "Jessica": ("Jess", "Jessie"),
    "Natalie": ("Nat",),
    "Kimberley": ("Kim",),
    "Christine": ("Chris", "Tina"),
    "Jacqueline": ("Jackie",),
    "Josephine": ("Jo", "Josie"),
    "Joanne": ("Jo",),
    "Alexandra": ("Alex", "Lexi"),
    "Stephanie": ("Steph",),
    "Gillian": ("Gill",),
    "Pauline": ("Pauly",),
    "Florence": ("Flo", "Florrie"),
    "Matilda": ("Tilly", "Tilda"),
    "Małgorzata": ("Gosia",),
    "Katarzyna": ("Kasia",),
    "Agnieszka": ("Aga",),
    "Aleksandra": ("Ola",),
    "Oluwakemi": ("Kemi",),
    "Funmilayo": ("Funmi",),
    "Temitope": ("Tope",),
}

# Street name stems (combined with a suffix below) and the suffixes themselves.
STREET_STEMS = tuple(
    """
    Church Station Victoria Park Queens Kings Albert Mill Manor York Grange School
    Chapel Springfield Highfield Westfield Mount Oak Elm Ash Beech Cedar Willow Hawthorn
    Holly Rowan Birch Laurel Maple Chestnut Sycamore Poplar Lime Alder Heather Primrose
    Meadow Orchard Green Broad New North South East West Moor Common Bridge Brook
    Farm Hall Castle Abbey Priory Market Garden Field Hill Valley Lake Windsor Stanley
    Clarence Cavendish Grosvenor Devonshire Marlborough Wellington Nelson Trafalgar
    Waterloo Balmoral Sandringham Osborne Belmont Beaumont Richmond Kensington Chelsea
    Hanover Regent Cromwell Gladstone Disraeli Milton Shakespeare Byron Tennyson
    Wordsworth Chaucer Dickens Bronte Ruskin Darwin Newton Faraday Brunel Telford
    Stephenson Harewood Kirkstall Roundhay Headingley Chapeltown Harehills Beeston
    Armley Bramley Pudsey Horsforth Rawdon Heaton Manningham Bowling Horton Allerton
    Thornton Clayton Shipley Baildon Idle Eccleshill Wibsey Bierley Tong Ardwick
    Rusholme Moss Longsight Levenshulme Gorton Openshaw Ancoats Cheetham Crumpsall
    Blackley Moston Withington Didsbury Chorlton Hulme Whalley Sparkbrook Sparkhill
    Handsworth Aston Erdington Edgbaston Harborne Moseley Selly Northfield
    Yardley Sheldon Acocks Hodge Stechford Lozells Nechells Saltley Alum Bordesley
    Ladywood Winson Hockley Perry Witton Tyburn Kingstanding Oscott Quinton Bartley
    Weoley Bournville Stirchley Cotteridge Hawkesley Druids Frankley Rubery Longbridge
    Pear Cherry Apple Plum Walnut Hazel Juniper Larch Pine Fir Spruce Yew Bracken Fern
    Ivy Lavender Clover Daisy Bluebell Foxglove Thistle Sorrel Marigold Jasmine Rose
    Tulip Violet Iris Lilac Magnolia Wisteria Acacia Linden Grove Cottage Dale Fold
    Croft Crescent Ings Carr Royd Clough Shaw Gate Lea Leys Mead Heath Ridge Bank
    Cross Spring Well Stone Quarry Kiln Forge Foundry Canal Wharf Lock Weir Ferry
    Railway Tram Coach Tanner Weaver Dyer Fuller Cooper Carter Mason Baker Brewer
    Chandler Fletcher Salter Glover Sadler Turner Miller Smith Shepherd Hunter Fisher
    """.split()
)
STREET_SUFFIXES = (
    ("Road", 30),
    ("Street", 25),
    ("Avenue", 10),
    ("Close", 8),
    ("Lane", 8),
    ("Crescent", 5),
    ("Drive", 6),
    ("Gardens", 4),
    ("Way", 4),
    ("Grove", 4),
    ("Terrace", 5),
    ("Court", 3),
    ("Place", 3),
    ("Mount", 2),
    ("View", 2),
    ("Walk", 1),
)
# Abbreviations some systems use for street suffixes.
SUFFIX_ABBREVIATIONS = {
    "Road": "Rd",
    "Street": "St",
    "Avenue": "Ave",
    "Close": "Cl",
    "Lane": "Ln",
    "Crescent": "Cres",
    "Drive": "Dr",
    "Gardens": "Gdns",
    "Grove": "Gr",
    "Terrace": "Terr",
    "Court": "Ct",
    "Place": "Pl",
}

# Council areas: (local authority name, DfE LA code, districts). Each district is
# (outward code, post town, locality used as an address line where given).
COUNCILS: tuple[tuple[str, int, tuple[tuple[str, str, str], ...]], ...] = (
    (
        "Leeds",
        383,
        (
            ("LS1", "Leeds", ""),
            ("LS2", "Leeds", ""),
            ("LS3", "Leeds", "Woodhouse"),
            ("LS4", "Leeds", "Burley"),
            ("LS5", "Leeds", "Hawksworth"),
            ("LS6", "Leeds", "Headingley"),
            ("LS7", "Leeds", "Chapel Allerton"),
            ("LS8", "Leeds", "Harehills"),
            ("LS9", "Leeds", "Burmantofts"),
            ("LS10", "Leeds", "Hunslet"),
            ("LS11", "Leeds", "Beeston"),
            ("LS12", "Leeds", "Armley"),
            ("LS13", "Leeds", "Bramley"),
            ("LS14", "Leeds", "Seacroft"),
            ("LS15", "Leeds", "Cross Gates"),
            ("LS16", "Leeds", "Adel"),
            ("LS17", "Leeds", "Moortown"),
            ("LS18", "Leeds", "Horsforth"),
            ("LS19", "Leeds", "Yeadon"),
            ("LS20", "Leeds", "Guiseley"),
            ("LS21", "Otley", ""),
            ("LS22", "Wetherby", ""),
            ("LS23", "Wetherby", "Boston Spa"),
            ("LS24", "Tadcaster", ""),
            ("LS25", "Leeds", "Garforth"),
            ("LS26", "Leeds", "Rothwell"),
            ("LS27", "Leeds", "Morley"),
            ("LS28", "Pudsey", ""),
            ("LS29", "Ilkley", ""),
        ),
    ),
    (
        "Bradford",
        380,
        (
            ("BD1", "Bradford", ""),
            ("BD2", "Bradford", "Eccleshill"),
            ("BD3", "Bradford", "Barkerend"),
            ("BD4", "Bradford", "Bowling"),
            ("BD5", "Bradford", "Little Horton"),
            ("BD6", "Bradford", "Wibsey"),
            ("BD7", "Bradford", "Great Horton"),
            ("BD8", "Bradford", "Manningham"),
            ("BD9", "Bradford", "Heaton"),
            ("BD10", "Bradford", "Idle"),
            ("BD11", "Bradford", "Drighlington"),
            ("BD12", "Bradford", "Low Moor"),
            ("BD13", "Bradford", "Queensbury"),
            ("BD14", "Bradford", "Clayton"),
            ("BD15", "Bradford", "Allerton"),
            ("BD16", "Bingley", ""),
            ("BD17", "Shipley", "Baildon"),
            ("BD18", "Shipley", ""),
            ("BD19", "Cleckheaton", ""),
            ("BD20", "Keighley", "Silsden"),
            ("BD21", "Keighley", ""),
            ("BD22", "Keighley", "Haworth"),
        ),
    ),
    (
        "Manchester",
        352,
        (
            ("M1", "Manchester", ""),
            ("M2", "Manchester", ""),
            ("M3", "Manchester", ""),
            ("M4", "Manchester", "Ancoats"),
            ("M8", "Manchester", "Cheetham Hill"),
            ("M9", "Manchester", "Blackley"),
            ("M11", "Manchester", "Openshaw"),
            ("M12", "Manchester", "Longsight"),
            ("M13", "Manchester", "Ardwick"),
            ("M14", "Manchester", "Fallowfield"),
            ("M15", "Manchester", "Hulme"),
            ("M16", "Manchester", "Whalley Range"),
            ("M18", "Manchester", "Gorton"),
            ("M19", "Manchester", "Levenshulme"),
            ("M20", "Manchester", "Didsbury"),
            ("M21", "Manchester", "Chorlton"),
            ("M22", "Manchester", "Wythenshawe"),
            ("M23", "Manchester", "Baguley"),
            ("M40", "Manchester", "Moston"),
        ),
    ),
    (
        "Birmingham",
        330,
        (
            ("B1", "Birmingham", ""),
            ("B4", "Birmingham", ""),
            ("B5", "Birmingham", "Digbeth"),
            ("B6", "Birmingham", "Aston"),
            ("B7", "Birmingham", "Nechells"),
            ("B8", "Birmingham", "Washwood Heath"),
            ("B9", "Birmingham", "Bordesley Green"),
            ("B10", "Birmingham", "Small Heath"),
            ("B11", "Birmingham", "Sparkhill"),
            ("B12", "Birmingham", "Balsall Heath"),
            ("B13", "Birmingham", "Moseley"),
            ("B14", "Birmingham", "Kings Heath"),
            ("B15", "Birmingham", "Edgbaston"),
            ("B16", "Birmingham", "Ladywood"),
            ("B17", "Birmingham", "Harborne"),
            ("B18", "Birmingham", "Hockley"),
            ("B19", "Birmingham", "Lozells"),
            ("B20", "Birmingham", "Handsworth"),
            ("B21", "Birmingham", "Handsworth Wood"),
            ("B23", "Birmingham", "Erdington"),
            ("B24", "Birmingham", "Tyburn"),
            ("B25", "Birmingham", "Yardley"),
            ("B26", "Birmingham", "Sheldon"),
            ("B27", "Birmingham", "Acocks Green"),
            ("B28", "Birmingham", "Hall Green"),
            ("B29", "Birmingham", "Selly Oak"),
            ("B30", "Birmingham", "Stirchley"),
            ("B31", "Birmingham", "Northfield"),
            ("B32", "Birmingham", "Quinton"),
            ("B33", "Birmingham", "Stechford"),
            ("B34", "Birmingham", "Shard End"),
            ("B35", "Birmingham", "Castle Vale"),
            ("B36", "Birmingham", "Hodge Hill"),
            ("B38", "Birmingham", "Kings Norton"),
            ("B42", "Birmingham", "Great Barr"),
            ("B44", "Birmingham", "Kingstanding"),
        ),
    ),
)

# Letters allowed in the last two characters of a UK postcode (never C I K M O V).
INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"

# Characters some systems cannot store (Windows-1252 exports): folded to ASCII.
CP1252_FOLD = str.maketrans(
    {
        "ł": "l",
        "Ł": "L",
        "ś": "s",
        "Ś": "S",
        "ż": "z",
        "Ż": "Z",
        "ź": "z",
        "Ź": "Z",
        "ć": "c",
        "Ć": "C",
        "ń": "n",
        "Ń": "N",
        "ą": "a",
        "Ą": "A",
        "ę": "e",
        "Ę": "E",
        "ș": "s",
        "Ș": "S",
        "ț": "t",
        "Ț": "T",
        "ă": "a",
        "Ă": "A",
        "ė": "e",
        "ų": "u",
        "š": "s",
        "Š": "S",
        "ž": "z",
        "Ž": "Z",
        "ū": "u",
        "į": "i",
    }
)

# Accented and punctuated characters and their plain forms, for "accent dropped".
ACCENT_FOLD = str.maketrans(
    {
        "ë": "e",
        "é": "e",
        "è": "e",
        "ó": "o",
        "ł": "l",
        "Ł": "L",
        "ś": "s",
        "Ś": "S",
        "ż": "z",
        "Ż": "Z",
        "ź": "z",
        "ć": "c",
        "ń": "n",
        "ą": "a",
        "ę": "e",
        "ș": "s",
        "ț": "t",
        "ă": "a",
    }
)

# PopulationConfig.surnames: the fixed lists only, or British surnames by frequency
SURNAME_SOURCES = ("lists", "long-tail")

# British surnames' published frequencies, as (rank, bearers per million) points
# between which a rank's frequency is interpolated on log-log axes. Rank 1 is
# Smith at about 1.2% of the 1996 electoral register; the others are the
# surname profiler's figures for Allen, Burton, Giles, Hallam, Lewin, Handy,
# Strain, Tidball and Came, as quoted at http://www.ing.iac.es/~crb/ftr/names.html
# (the leading names' table: http://homepages.newnet.co.uk/dance/webpjd/offstats/comtable.htm).
# Real names thin out past the last point; the generator's open tail stops at
# the last made-up name (below), about rank 44,000.
BRITISH_SURNAME_FREQUENCY = (
    (1, 12000.0),
    (49, 2082.0),
    (128, 942.0),
    (390, 420.0),
    (788, 206.0),
    (1942, 86.0),
    (3680, 38.0),
    (5799, 22.0),
    (11886, 9.0),
    (16554, 5.0),
)

# Parts of made-up English-looking surnames (place-name and trade shapes) for the
# open tail past BRITISH_SURNAMES: first part + last part, or first + middle + last.
SURNAME_FIRST_PARTS = tuple(
    """
    Ash Brad Whit Hol Lang Thorn Brook Hart Stan Bur Cal Mar Ken Win Har Red Black
    Fair Gil Hal Ing Kirk Lind Mel Nor Ox Pen Ram Shel Stock Tre Wal Wey Ald Bel Cran
    Dun Ed Frank Gar Hay Hun Kel Lock Mor Pax Rad Saw Tal Wes Yar Bram Chad Dar Elm Fen
    Gold Hump Lay Pil Quar Rook Sud Tut
    """.split()
)
SURNAME_MIDDLE_PARTS = tuple("er ing el an en ow ell ers ald ock il am ith ut ick om".split())
SURNAME_LAST_PARTS = tuple(
    """
    ley ton ford field worth by ham well wood man more ridge stone dale son croft hurst
    combe den thorpe wick stead burn gate shaw cott low land sey bury brook hill mead
    house way lock gill ey ard ings
    """.split()
)
