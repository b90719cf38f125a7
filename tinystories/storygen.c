// tinystories/storygen.c: a built-in offline corpus of simple children's stories.
//
// Training, the demo and the tests must work with no network, so ouro.c carries its own small
// "TinyStories": a procedural generator of short stories written for this project. None of its
// text comes from the TinyStories dataset. `./prepare generate` calls story_generate() once per
// story and writes the V2 text format around the stories.
//
// How a story is made:
//   1. Casting. One rng draw after another picks a plot and fills the story's slots: a hero (name,
//      kind, he/she), a friend, a grown-up, a toy, a place, the weather, plus what the plot needs
//      (a fear, a thing to build, a seed to plant...). Each table row below is one coherent choice.
//      In a table field, "a|b|c" lists variants; casting keeps one of them for the whole story.
//   2. Templates. A plot is a story skeleton written in a tiny template language:
//        {role.form}  a slot: {hero} "Mia", {hero.his} "her", {obj.was} "were", {pal.call} "Fox"
//                     an upper-case first letter ({Hero}, {hero.He}) capitalises the value
//        [a|b|c]      one alternative picked at random each time ([a|] makes "a" optional)
//      Slots are fixed once per story, so names, pronouns and the lost toy stay consistent;
//      the [a|b] choices vary the wording every time a sentence is written. A slot's value may
//      itself be a template (a fear's "scene" mentions {hero.his}), expanded where it is used.
//   3. The writer puts the text together and handles the small rules of English spelling: a
//      capital letter starts every sentence and every quotation, "a" becomes "an" before a vowel,
//      spaces collapse and never come before punctuation, "\n" starts a new paragraph.
// Agreement lives in the slots: every slot that changes with gender or number has all its forms
// (he/his/him/himself, it/they/them, was/were, is/are) and each template names the form it needs.
//
// A story is an opening line, then one plot: a problem, an attempt, a resolution and an ending.
// Length: 100 to 300 words in 3 to 5 paragraphs, plain ASCII, dialogue in straight quotes.
// Determinism: the output depends only on the rng state; the rng advances the same way whatever
// the cap is (truncation happens after writing), so a stream of stories never shifts.

#include "../common.h"

// ----------------------------------------------------------------------------
// word tables

typedef struct {
    const char *noun;    // "girl", "fox": "a little fox named Pip", "the fox"
    int person;          // 1 for girls and boys: people's names, gender fixed by the noun
    int gender;          // 0 he, 1 she, 2 either (picked per story)
    int flies;           // birds: they can learn to fly and never learn to whistle
    const char *moved;   // how it goes somewhere, past tense ("hopped over to")
    const char *glad;    // happy gestures, past tense; {his} is the character's own possessive
    const char *home;    // where it lives, as a place phrase ("in a den at the edge of the woods")
    const char *limb;    // what it hurts when it trips
    const char *hands;   // what it makes things with
} CharacterKind;

static const CharacterKind KINDS[] = {
    {"girl", 1, 1, 0, "ran", "clapped {his} hands|jumped up and down|did a little dance|gave a happy shout",
     "in a small house at the end of a quiet street|in a yellow house near a big hill|in a small town by a river",
     "knee", "hands"},
    {"boy", 1, 0, 0, "ran", "clapped {his} hands|jumped up and down|did a little dance|gave a happy shout",
     "in a small house at the end of a quiet street|in a blue house near a big hill|in a small town by a river",
     "knee", "hands"},
    {"puppy", 0, 2, 0, "ran", "wagged {his} tail|barked a happy bark|chased {his} own tail in a circle",
     "in a cozy house with a big green yard|in a little house next to the park", "paw", "paws"},
    {"kitten", 0, 2, 0, "ran", "purred loudly|swished {his} tail|rolled over on {his} back",
     "in a warm house with a sunny window|in a small house with a blue door", "paw", "paws"},
    {"bunny", 0, 2, 0, "hopped", "wiggled {his} nose|hopped up and down|thumped {his} foot happily",
     "in a burrow under an old oak tree|in a snug hole at the edge of a meadow", "foot", "paws"},
    {"bear", 0, 2, 0, "ran", "gave a happy growl|did a big bear dance|rolled on {his} back and laughed",
     "in a cave near a rushing river|in a big forest full of berry bushes", "paw", "paws"},
    {"fox", 0, 2, 0, "trotted", "swished {his} bushy tail|jumped in a happy circle",
     "in a den at the edge of the woods|in a quiet forest under a hill", "paw", "paws"},
    {"frog", 0, 2, 0, "hopped", "croaked a happy song|jumped high in the air",
     "by a quiet pond full of lily pads|near a little stream in the woods", "leg", "feet"},
    {"duck", 0, 2, 0, "waddled", "flapped {his} wings|quacked with joy",
     "on a pond with tall green reeds|by a lake near a small farm", "foot", "beak"},
    {"mouse", 0, 2, 0, "scurried", "squeaked with joy|twitched {his} whiskers",
     "in a tiny hole behind a kitchen wall|in a snug nest under a barn", "paw", "paws"},
    {"bird", 0, 2, 1, "flew", "sang a happy song|fluttered {his} wings",
     "in a nest high up in a tall tree|in a garden full of flowers", "wing", "beak"},
    {"owl", 0, 2, 1, "flew", "hooted softly|flapped {his} big wings",
     "in a hollow of an old tree|in a tall tree at the edge of the forest", "wing", "beak"},
    {"turtle", 0, 2, 0, "crawled", "smiled a slow, happy smile|stretched {his} neck up high",
     "near a sunny pond|by a slow, winding river", "leg", "feet"},
    {"squirrel", 0, 2, 0, "scampered", "flicked {his} fluffy tail|chattered with joy",
     "in a tall oak tree in the park|in a leafy tree near a garden", "paw", "paws"},
    {"lamb", 0, 2, 0, "skipped", "kicked up {his} heels|bleated happily",
     "on a green hill near a big farm|on a farm with a red barn", "leg", "hooves"},
    {"pig", 0, 2, 0, "trotted", "oinked with joy|did a happy wiggle",
     "on a busy farm with a red barn|in a muddy pen on a sunny farm", "leg", "hooves"},
    {"hedgehog", 0, 2, 0, "scurried", "gave a happy squeak|wiggled {his} little nose",
     "under a hedge at the bottom of a garden|in a pile of leaves near a wood", "foot", "paws"},
    {"elephant", 0, 2, 0, "walked", "raised {his} trunk and trumpeted|flapped {his} big ears",
     "near a wide, muddy river|on a grassy plain with tall trees", "foot", "trunk"},
};
enum { N_KINDS = sizeof KINDS / sizeof KINDS[0] };

static const char *const GIRL_NAMES[] = {
    "Mia", "Anna", "Rosa", "Nina", "Ella", "Zoe", "Ruby", "Maya", "Lucy", "Kim", "Ada", "Ivy",
    "Nora", "Hana", "Tess", "June", "Pia", "Lena", "Greta", "Ayla", "Elsa", "Iris", "Cora",
    "Daisy", "Molly", "Sara", "Lola", "Emma", "Amy", "Jade",
};
static const char *const BOY_NAMES[] = {
    "Ben", "Leo", "Sam", "Max", "Finn", "Theo", "Omar", "Raj", "Tom", "Jack", "Eli", "Noah",
    "Milo", "Kai", "Ivan", "Oscar", "Hugo", "Ravi", "Jonah", "Luke", "Ned", "Otto", "Pablo",
    "Arlo", "Felix", "Toby", "Jamal", "Kofi", "Yusuf", "Dan",
};
static const char *const PET_NAMES[] = {   // for animals of either gender
    "Pip", "Dot", "Bo", "Coco", "Patch", "Biscuit", "Pepper", "Button", "Sunny", "Clover",
    "Rusty", "Nutmeg", "Maple", "Pebble", "Ziggy", "Bramble", "Poppy", "Tuffy", "Momo", "Wren",
    "Fig", "Juniper", "Toffee", "Mochi", "Bean", "Sprout", "Acorn", "Puddle", "Socks", "Honey",
};
enum { N_GIRL_NAMES = sizeof GIRL_NAMES / sizeof GIRL_NAMES[0],
       N_BOY_NAMES = sizeof BOY_NAMES / sizeof BOY_NAMES[0],
       N_PET_NAMES = sizeof PET_NAMES / sizeof PET_NAMES[0] };

// What a character is like. "brave" and "shy" are left out: some plots are about fear.
static const char *const ADJECTIVES[] = {
    "kind", "curious", "cheerful", "gentle", "playful", "friendly", "happy", "clever", "busy",
    "sweet", "lively", "silly", "helpful", "smart",
};
enum { N_ADJECTIVES = sizeof ADJECTIVES / sizeof ADJECTIVES[0] };

typedef struct { const char *name; int she; } Grownup;
static const Grownup GROWNUPS[] = { {"mom", 1}, {"dad", 0}, {"grandma", 1}, {"grandpa", 0} };
enum { N_GROWNUPS = sizeof GROWNUPS / sizeof GROWNUPS[0] };

typedef struct {
    const char *name;    // used by plots that need a particular place
    const char *at;      // "at the park": where something happens
    const char *to;      // "to the park": where someone goes
    int indoors;         // toys that need open air (kites, boats) are never taken indoors
    const char *spots;   // five places where a lost thing can hide
} StoryPlace;

static const StoryPlace PLACES[] = {
    {"park", "at the park", "to the park", 0,
     "under a bench|behind a big tree|near the swings|in the tall grass|by the duck pond"},
    {"garden", "in the garden", "out to the garden", 0,
     "under a bush|behind the flower pots|next to the carrots|under the watering can|in a pile of leaves"},
    {"beach", "at the beach", "to the beach", 0,
     "in the soft sand|behind a big rock|under a beach towel|near a pile of seaweed|beside a sand dune"},
    {"forest", "in the forest", "into the forest", 0,
     "under a log|behind a big tree|in a pile of leaves|near a little stream|under a fern"},
    {"farm", "on the farm", "to the farm", 0,
     "in the hay|behind the barn|near the pig pen|by the old fence|under the cart"},
    {"backyard", "in the backyard", "out to the backyard", 0,
     "under the picnic table|behind the shed|in the sandbox|next to the fence|under a bush"},
    {"meadow", "in the meadow", "to the meadow", 0,
     "in the tall grass|under a flower bush|behind a big stone|near the stream|beside an old tree stump"},
    {"pond", "by the pond", "down to the pond", 0,
     "in the reeds|behind a big rock|by the old dock|under a willow tree|near the lily pads"},
    {"playground", "at the playground", "to the playground", 0,
     "under the slide|in the sandbox|behind the swings|next to the seesaw|under the climbing frame"},
    {"kitchen", "in the kitchen", "into the kitchen", 1,
     "under the table|behind the bread box|inside a big pot|next to the fridge|under a chair"},
    {"living room", "in the living room", "into the living room", 1,
     "under the sofa|behind the curtains|under a pillow|inside the toy box|behind the big chair"},
    {"bedroom", "in {hero.his} room", "to {hero.his} room", 1,
     "under the bed|in the closet|behind the door|under a pile of clothes|inside a basket"},
    {"school", "at school", "to school", 1,
     "under a desk|in the coat room|behind the bookshelf|next to the paint jars|under the teacher's table"},
};
enum { N_PLACES = sizeof PLACES / sizeof PLACES[0] };

typedef struct {
    const char *noun;    // "kite", "marbles"
    int plural;          // marbles: "they were", "them"
    const char *a;       // "a", or how to count a plural: "a bag of"
    const char *adjs;    // one is kept: "a red kite"
    const char *use;     // what you do with it, base form ("fly it in the wind")
    const char *used;    // the same in the past tense
    int outdoors;        // needs open air
} Toy;

static const Toy TOYS[] = {
    {"ball", 0, "a", "red|blue|bouncy|striped|shiny", "bounce it high", "bounced it high", 0},
    {"kite", 0, "a", "red|yellow|green|striped", "fly it in the wind", "flew it in the wind", 1},
    {"boat", 0, "a", "little|wooden|blue", "sail it on the water", "sailed it on the water", 1},
    {"teddy bear", 0, "a", "soft|brown|fluffy|old", "hug it tight", "hugged it tight", 0},
    {"doll", 0, "a", "little|rag|pretty", "dress it in tiny clothes", "dressed it in tiny clothes", 0},
    {"hat", 0, "a", "red|yellow|big|floppy|straw", "put it on and march around", "put it on and marched around", 0},
    {"scarf", 0, "a", "warm|striped|long|woolly", "wave it like a flag", "waved it like a flag", 0},
    {"blocks", 1, "a set of", "wooden|colorful|bright", "build tall towers with them",
     "built tall towers with them", 0},
    {"crayons", 1, "a box of", "bright|new|colorful", "draw pictures with them", "drew pictures with them", 0},
    {"marbles", 1, "a bag of", "shiny|glass|colorful", "roll them in circles", "rolled them in circles", 0},
    {"toy car", 0, "a", "little|red|fast|shiny", "race it around", "raced it around", 0},
    {"drum", 0, "a", "little|red|loud", "tap out songs on it", "tapped out songs on it", 0},
    {"picture book", 0, "a", "big|old|new", "look at its pictures", "looked at its pictures", 0},
    {"shell", 0, "a", "pink|shiny|smooth|spotted", "listen to the sea inside it",
     "listened to the sea inside it", 0},
    {"balloon", 0, "a", "red|yellow|big|round", "bounce it up in the air", "bounced it up in the air", 0},
    {"umbrella", 0, "a", "yellow|red|spotted|little", "twirl it around", "twirled it around", 0},
    {"wagon", 0, "a", "red|little|wooden", "pull it around", "pulled it around", 0},
    {"train", 0, "a", "toy|little|wooden", "push it along its track", "pushed it along its track", 0},
    {"bell", 0, "a", "little|shiny|silver", "ring it", "rang it", 0},
    {"paints", 1, "a box of", "bright|new", "paint pictures with them", "painted pictures with them", 0},
    {"stickers", 1, "a sheet of", "shiny|sparkly|star", "stick them on everything", "stuck them on everything", 0},
    {"yo-yo", 0, "a", "red|blue|green", "spin it up and down", "spun it up and down", 0},
};
enum { N_TOYS = sizeof TOYS / sizeof TOYS[0] };

typedef struct { const char *day; const char *sky; } StoryWeather;
enum { SUNNY, WINDY, CLOUDY, RAINY, SNOWY, N_FAIR_WEATHERS = RAINY };
static const StoryWeather WEATHERS[] = {
    [SUNNY] = {"One sunny morning|One bright, sunny day|On a warm summer day|One sunny afternoon",
               "The sun was warm, and the sky was blue.|The sun was shining, and birds were singing.|"
               "It was a warm day with a soft breeze."},
    [WINDY] = {"One windy afternoon|On a breezy autumn day|One windy morning",
               "The wind was blowing the leaves around.|The trees swayed in the wind.|"
               "A cool wind whistled through the trees."},
    [CLOUDY] = {"One cloudy morning|On a cool, gray day|One quiet afternoon",
                "Soft gray clouds covered the sky.|The air was cool and fresh.|"
                "Fluffy clouds drifted across the sky."},
    [RAINY] = {"One rainy morning|On a wet, gray day", "Rain tapped on the windows.|Raindrops pattered on the roof."},
    [SNOWY] = {"One cold winter morning|On a snowy day",
               "Soft white snow covered the ground.|Snowflakes floated down from the sky."},
};

// ----------------------------------------------------------------------------
// plot ingredients: one row per variant of a plot's problem and its resolution

typedef struct {      // "brave": something scary that turns out fine ("" place: any)
    const char *what, *place, *scene, *worry, *brave, *reveal, *after;
} Fear;

static const Fear FEARS[] = {
    {"the big slide", "playground",
     "At the playground, there was a new slide. It was the tallest slide {hero} had ever seen, and the "
     "other children slid down it, laughing all the way.",
     "It is too high. What if I fall?",
     "{Hero} climbed the ladder one step at a time. At the top, {hero.he} took a deep breath, closed "
     "{hero.his} eyes and let go.",
     "Whoosh! Down {hero.he} went, fast and smooth, and landed softly at the bottom.",
     "The slide was not scary at all. It was fun! {Hero} ran straight back to the ladder to go again."},
    {"the dark", "bedroom",
     "One night, after {hero.his} {elder} turned off the light, {hero.his} room became very dark. In the "
     "corner, {hero} saw a big, strange shape with long arms and a round head!",
     "There is a monster in my room!",
     "{Hero} pulled the blanket up to {hero.his} nose. Then {hero.he} counted to three, climbed out of "
     "bed and turned on the lamp.",
     "It was not a monster at all. It was only {hero.his} coat hanging on a chair, with {hero.his} hat on top!",
     "{Hero} giggled and hung the coat on its hook. After that, the dark did not seem so scary."},
    {"loud thunder", "bedroom",
     "That night, a big storm came. The wind howled, and rain hit the windows. Then the sky went BOOM! "
     "{Hero} jumped and hid under the blanket.",
     "The storm is so loud!",
     "{Hero} peeked out from under the blanket. Together they watched the window and counted slowly "
     "after each flash of light, to see how far away the storm was.",
     "Flash! One, two, three, BOOM! Flash! One, two, three, four, five, boom. Each time, the count got "
     "longer and the thunder got softer.",
     "The storm was moving far away. Soon {hero} was fast asleep, listening to the gentle rain."},
    {"the big dog next door", "park",
     "Every day on the way {place.to}, {hero} had to walk past a fence with a big dog behind it. The dog "
     "barked every time {hero} went by: WOOF! WOOF!",
     "That dog is so big and so loud. I don't want to walk past it!",
     "The next day, {hero} stopped at the fence. {Hero.His} knees were shaking, but {hero.he} said in a "
     "small voice, \"Hello, dog.\"",
     "The big dog stopped barking. It wagged its tail and pushed a ball under the fence with its nose. "
     "It did not want to be scary. It only wanted someone to play with!",
     "{Hero} rolled the ball back, and the dog caught it. After that, {hero} waved to the big dog every "
     "day, and the dog wagged its tail back."},
    {"strange noises in the dark", "garden",
     "One evening, {hero} heard a strange noise in the garden. Rustle, rustle, crunch! Something was "
     "moving in the bushes.",
     "What is that? Is it a wolf?",
     "{Hero} picked up a flashlight. {Hero.His} {elder} stayed close beside {hero.him}, and together "
     "they tiptoed outside.",
     "{Hero} shone the light on the bushes. Two tiny eyes blinked back. It was a little hedgehog, "
     "munching on a fallen apple!",
     "The hedgehog was even more scared than {hero}. {Hero} set out a dish of water for {hero.his} new "
     "prickly friend and smiled."},
    {"new places", "school",
     "It was {hero}'s first day at a new school. The building was big, and there were so many faces "
     "{hero.he} did not know.",
     "What if nobody wants to play with me?",
     "{Hero} held on tight to {hero.his} bag and walked in. A kind teacher showed {hero.him} where to "
     "hang {hero.his} coat.",
     "Then {pal.intro} came over and smiled. \"Do you want to paint with me?\" {pal.he} asked.",
     "They painted a big yellow sun together. By the end of the day, {hero} had a new friend, and the "
     "school did not feel so big anymore."},
    {"the vacuum cleaner", "living room",
     "{Hero.His} {elder} was cleaning the living room with a big vacuum cleaner. VROOM! It roared across "
     "the floor, straight toward {hero}.",
     "It is going to eat me!",
     "{Hero.His} {elder} turned the vacuum off and let {hero} look at it up close. {Hero} touched its "
     "long nose and its round wheels. Then, very slowly, {hero.he} pressed the button {hero.himself}.",
     "VROOM! The vacuum gobbled up some crumbs and a bit of dust. It did not want to eat {hero} at all.",
     "From then on, {hero} helped to clean the living room every week, and {hero.he} even gave the "
     "vacuum a name: Hummy."},
    {"going to the doctor", "",
     "One day, {hero} had to go to the doctor for a checkup. The waiting room smelled funny, and {hero} "
     "could hear a baby crying behind a door.",
     "What if it hurts?",
     "Then the doctor came in. She had a kind smile and a funny tie with ducks on it. She let {hero} "
     "listen to {hero.his} own heart. Thump, thump, thump!",
     "The checkup was over very quickly. The doctor looked in {hero.his} ears, tapped {hero.his} knees "
     "and said, \"You are strong and healthy!\"",
     "{Hero} got a shiny sticker for being brave, and {hero.he} wore it all day long."},
};
enum { N_FEARS = sizeof FEARS / sizeof FEARS[0] };

typedef struct {      // "help": the friend is in trouble and the hero helps
    const char *place, *problem, *cry, *fix, *after;
} Trouble;

static const Trouble TROUBLES[] = {
    {"park",
     "{Pal.His} kite was stuck high up in a tree. {Pal.He} pulled and pulled on the string, but the kite did not move.",
     "My kite! I can't reach it!",
     "{Hero} looked around and found a long, thin stick. {Hero.He} climbed onto a big rock and reached "
     "up as high as {hero.he} could. With one little push, the kite came loose and floated down.",
     "Then they flew the kite together until the sun went down."},
    {"forest",
     "{Pal} had tripped over a root and hurt {pal.his} {pal.limb}. {Pal.He} was sitting on the ground "
     "and could not get up.",
     "Ouch! It hurts so much!",
     "{Hero} helped {pal} up, and slowly, step by step, they walked to {hero.his} house. {Hero.His} "
     "{elder} washed the scrape and wrapped it in a soft bandage.",
     "Soon {pal} felt much better."},
    {"farm",
     "{Pal} was standing under an apple tree. The red apples looked so sweet, but they were much too "
     "high for {pal.him} to reach.",
     "I am so hungry, and the apples are too high!",
     "{Hero} had an idea. {Hero.He} found an old wooden box and pushed it under the tree. Then "
     "{hero.he} climbed on top and picked two shiny apples, one for each of them.",
     "They sat in the shade and ate the crunchy apples together."},
    {"forest",
     "{Pal} was sitting on a log and looking all around. {Pal.He} had followed a butterfly too far and "
     "did not know the way back.",
     "I am lost! I can't find my way home.",
     "{Hero} knew the forest well. \"Follow me,\" {hero.he} said. They walked along the little stream, "
     "past the big gray rock and under the bent old tree, until they could see {pal}'s home.",
     "{Pal.His} family was so happy to see {pal.him} again."},
    {"pond",
     "{Pal.His} ball had rolled into the pond. It was bobbing on the water, too far away to reach.",
     "My ball! It will float away!",
     "{Hero} found a long branch. {Hero.He} held one end and stretched the other end out over the "
     "water. Gently, {hero.he} pulled the ball closer and closer until {pal} could grab it.",
     "{Pal} hugged the wet ball, and then they played catch on the grass."},
    {"meadow",
     "{Pal} had dropped {pal.his} basket, and red berries had rolled all over the grass.",
     "My berries! I picked them for my grandma!",
     "They got down on the grass and picked up the berries one by "
     "one, until the basket was full again.",
     "Then they carried the basket to {pal}'s grandma together, and she gave them each a berry muffin."},
    {"farm",
     "{Pal} was trying to carry a big orange pumpkin home, but it was much too heavy. {Pal.He} had to put "
     "it down every few steps.",
     "I will never get it home by myself!",
     "\"Let's carry it together,\" said {hero}. They each took one side of the pumpkin and lifted it up. "
     "One step, two steps, three steps, all the way down the road.",
     "At {pal}'s house, they set the pumpkin by the door, and it looked wonderful."},
    {"garden",
     "{Pal.His} scarf was caught on a thorny bush, and the more {pal.he} pulled, the tighter it got.",
     "I'm stuck! I can't get free!",
     "{Hero} told {pal} to stand very still. Then, slowly and carefully, {hero.he} lifted the scarf off "
     "the thorns, one by one, until {pal} was free.",
     "Then they walked home together, far away from the thorny bush."},
};
enum { N_TROUBLES = sizeof TROUBLES / sizeof TROUBLES[0] };

typedef struct {      // "trip": a day out with the grown-up
    const char *name, *picture, *sights, *best;
    int outdoors;
} Destination;

static const Destination DESTINATIONS[] = {
    {"the zoo", "the baby elephant",
     "At the zoo, they saw tall giraffes eating leaves from the tops of the trees. They saw a sleepy "
     "lion and a family of monkeys swinging from branch to branch.",
     "{Hero.His} favorite part was the baby elephant, who sprayed water all over itself with its trunk.", 1},
    {"a big blue lake", "the little boat",
     "At the lake, they took a little rowboat out on the water. {Hero.His} {elder} rowed slowly, and "
     "{hero} watched silver fish swim below. Ducks paddled past, quacking hello.",
     "{Hero.His} favorite part was skipping flat stones across the water. Skip, skip, skip, plop!", 1},
    {"a farm in the country", "the baby goat",
     "On the farm, they saw cows munching grass, pigs rolling in the mud and hens pecking at the "
     "ground. The farmer let {hero} collect warm brown eggs in a basket.",
     "{Hero.His} favorite part was feeding a baby goat from a bottle of milk. It drank so fast that "
     "{hero} laughed out loud.", 1},
    {"the mountains", "the waterfall",
     "They walked up a winding path through tall pine trees. From the top of the hill, they could see "
     "the whole valley, with tiny houses and a river shining like a ribbon.",
     "{Hero.His} favorite part was a little waterfall that splashed cold water on {hero.his} nose.", 1},
    {"the museum in the city", "the giant dinosaur",
     "The museum was full of wonderful things: old ships, shiny rocks, and paintings as big as a wall.",
     "{Hero.His} favorite part was a giant dinosaur skeleton. It was taller than a house! {Hero} stood "
     "under it and felt as small as an ant.", 0},
    {"the seaside", "the little crab",
     "At the seaside, they built a sandcastle, collected shells and let the cold waves tickle their toes.",
     "{Hero.His} favorite part was a little crab that walked sideways across the sand and then hid under a rock.", 1},
    {"the aquarium", "the starfish",
     "At the aquarium, they walked through a glass tunnel while fish of every color swam over their "
     "heads. They saw a sea turtle, a wiggly octopus and a shark with a big toothy grin.",
     "{Hero.His} favorite part was a little pool where {hero.he} could touch a starfish. It felt bumpy "
     "and cool.", 0},
};
enum { N_DESTINATIONS = sizeof DESTINATIONS / sizeof DESTINATIONS[0] };

typedef struct { const char *text; int outdoors; } Hitch;   // "trip": what goes wrong on the way

static const Hitch HITCHES[] = {
    {"After a while, {hero.his} legs grew tired. \"I can't walk anymore,\" {hero.he} said. So "
     "{hero.his} {elder} lifted {hero.him} up onto {elder.his} shoulders. Now {hero} was the tallest "
     "one there, and {hero.he} could see everything!", 0},
    {"At lunchtime, {hero.his} tummy rumbled loudly, but the snacks were all gone. Then {hero.his} "
     "{elder} found a little stand selling warm pretzels. They shared one on a bench, and it tasted "
     "better than anything.", 0},
    {"Suddenly, dark clouds rolled in, and big drops of rain began to fall. They ran and hid under a "
     "wooden shelter, giggling. When the rain stopped, a rainbow stretched across the sky.", 1},
    {"Then a gust of wind blew {hero.his} hat right off {hero.his} head! It tumbled away along the "
     "ground. {Hero} ran after it, and a kind man caught it and handed it back with a smile.", 1},
};
enum { N_HITCHES = sizeof HITCHES / sizeof HITCHES[0] };

typedef struct {      // "sorry": a mistake, the truth, an apology, a fix
    const char *place, *setup, *accident, *confess, *fix;
} Mistake;

static const Mistake MISTAKES[] = {
    {"living room",
     "{Pal} had built a tall tower of blocks. It was taller than the big chair!",
     "{Hero} ran past too fast and bumped the tower with {hero.his} elbow. Crash! The blocks fell all over the floor.",
     "I was running too fast.",
     "Together they built a new tower, even taller than the first one."},
    {"kitchen",
     "{Pal} was drawing a picture of a big red house with a green door. It was almost finished.",
     "{Hero} reached for {hero.his} cup of juice and knocked it over. Splash! Juice spilled all over the picture.",
     "I was not careful with my cup.",
     "They got a fresh piece of paper and drew a new picture together. This time they drew two friends "
     "standing in front of the house."},
    {"beach",
     "{Pal} had built a sandcastle with four towers and a deep moat around it.",
     "{Hero} was chasing a ball and did not look where {hero.he} was going. Stomp! {Hero.He} stepped "
     "right on the sandcastle.",
     "I was not looking where I was going.",
     "They built a new sandcastle side by side, with six towers and shells on every wall."},
    {"park",
     "{Pal} let {hero} play with {pal.his} little red car. \"Please be careful with it,\" {pal.he} said.",
     "{Hero} pushed the car too hard down a hill. It hit a stone, and one of the wheels came off.",
     "I pushed it too hard.",
     "{Hero.His} {elder} helped them fix the wheel with a tiny screw, and soon the car rolled as good as new."},
    {"backyard",
     "{Pal} had baked some cookies for a picnic and left them on the table.",
     "{Hero} was so hungry that {hero.he} ate three of the cookies while {pal} was away.",
     "I ate your cookies.",
     "They baked a new batch of cookies together, and this time they shared every one."},
    {"living room",
     "{Pal} had lent {hero} {pal.his} favorite book about the moon.",
     "{Hero} took the book outside and forgot it on the steps. That night it rained, and in the morning "
     "the pages were wet and wrinkly.",
     "I left it out in the rain.",
     "They laid the book in the sun to dry, page by page, and {hero} made {pal} a new bookmark with a "
     "moon on it."},
    {"garden",
     "{Pal} had planted a row of little flowers by the fence.",
     "{Hero} was throwing a ball and did not look. The ball landed right on the flowers and bent their stems.",
     "I threw the ball too close to your flowers.",
     "They tied each bent flower to a little stick, and a few days later the flowers stood up straight again."},
};
enum { N_MISTAKES = sizeof MISTAKES / sizeof MISTAKES[0] };

typedef struct {      // "build": building something, a setback, trying again
    const char *name, *place, *start, *setback, *fix, *result;
    int weather;
} Project;

static const Project PROJECTS[] = {
    {"a sandcastle", "beach",
     "They filled a bucket with wet sand and turned it upside down. Pat, pat, pat! Soon they had tall "
     "towers, a wall and a little door made of a shell.",
     "Then a big wave rolled up the beach. Whoosh! The water washed over the castle, and the towers "
     "melted into the sand.",
     "This time, they built the castle far from the water, where the sand was dry and warm. They dug a "
     "deep moat around it to catch the waves.",
     "The waves came close, but the castle stood strong.", SUNNY},
    {"a tall tower", "bedroom",
     "They stacked the blocks one on top of the other. The tower grew taller and taller.",
     "But when they put the last block on top, the tower wobbled. Crash! It fell all over the floor.",
     "\"Let's put the biggest blocks at the bottom,\" said {pal}. They built it again, wide at the "
     "bottom and small at the top.",
     "The new tower did not wobble at all. It was the tallest tower they had ever built.", CLOUDY},
    {"a blanket fort", "living room",
     "They took the cushions off the sofa and hung a big blanket over two chairs. They brought in "
     "pillows, a flashlight and a pile of books.",
     "But when {pal} sat down inside, the blanket slipped, and the whole fort fell on top of them!",
     "This time, they put heavy books on the corners of the blanket to hold it in place.",
     "The fort stayed up, and they read stories inside it until dinner.", RAINY},
    {"a snowman", "backyard",
     "They rolled a big ball of snow for the bottom and a smaller one for the middle.",
     "But every time they put the head on top, it rolled off and broke into pieces.",
     "{Hero.His} {elder} showed them how to pack the snow tight and make a flat spot for the head to sit on.",
     "At last, the snowman stood tall, with two stones for eyes, a carrot nose and a scarf around its neck.",
     SNOWY},
    {"a birdhouse", "garden",
     "{Hero.His} {elder} gave them some small boards, a hammer and nails. They hammered the walls "
     "together very carefully.",
     "But the roof kept sliding off, and the door was too small for any bird to fit through.",
     "They made the door bigger and glued the roof on tight. Then they painted the birdhouse bright blue.",
     "A few days later, a little brown bird moved in and sang for them every morning.", SUNNY},
    {"a little boat", "pond",
     "They tied some sticks together with long grass and used a big leaf for a sail.",
     "But when they put the boat on the water, it tipped over and sank!",
     "They tried again with thicker sticks and a wider bottom, so the boat could sit flat on the water.",
     "This time the little boat floated! The wind filled the leaf sail, and it sailed across the pond "
     "while they cheered.", WINDY},
    {"a kite", "meadow",
     "They tied two thin sticks together in a cross, glued paper over them and added a long tail made "
     "of ribbons.",
     "But when they ran with it, the kite spun around and around and crashed into the grass.",
     "\"It needs a longer tail,\" said {hero.his} {elder}. They tied on more ribbons to keep it steady.",
     "This time the kite climbed high into the sky and danced in the wind.", WINDY},
    {"a rocket ship", "bedroom",
     "They found a big cardboard box and cut a round window in the side. They painted it silver and drew "
     "stars all over it.",
     "But when they both climbed in, the bottom of the box tore open, and they landed on the floor with a bump!",
     "They taped the bottom with lots and lots of tape and put a pillow inside to sit on.",
     "Then they counted down, three, two, one, and flew all the way to the moon in their minds.", RAINY},
};
enum { N_PROJECTS = sizeof PROJECTS / sizeof PROJECTS[0] };

typedef struct { const char *offer, *doing, *result; } Pastime;   // "rain": fun indoors

static const Pastime PASTIMES[] = {
    {"Let's bake some cookies!",
     "They mixed flour, butter and sugar in a big bowl. {Hero} cracked the egg all by {hero.himself} "
     "and stirred and stirred.",
     "Soon the kitchen smelled warm and sweet. The cookies came out golden, and they ate them with cold milk."},
    {"Let's build a fort with blankets and pillows!",
     "They hung a big blanket over the chairs and crawled inside with a flashlight.",
     "Inside the fort, they told stories and made shadow animals on the wall."},
    {"Let's paint some pictures!",
     "They put on old shirts and spread paper on the table. {Hero} painted a big sun, a green tree and "
     "a blue sky with no rain at all.",
     "They hung the paintings on the fridge to dry."},
    {"Let's make puppets and put on a show!",
     "They made puppets out of old socks, with buttons for eyes and yarn for hair.",
     "{Hero.His} sock puppet told silly jokes, and {hero.his} {elder} laughed so hard that {elder.he} "
     "almost fell off the sofa."},
    {"Let's play hide and seek!",
     "{Hero} hid behind the curtains, under the table and inside the big closet.",
     "Each time {hero.his} {elder} found {hero.him}, they both burst out laughing."},
    {"Let's do a big puzzle!",
     "They spread the pieces on the floor and looked for the corners first. {Hero} found the piece with "
     "the sun on it.",
     "When the last piece clicked into place, the puzzle showed a ship sailing on a blue sea."},
    {"Let's have a dance party!",
     "They turned on happy music and pushed the chairs out of the way. {Hero} spun, hopped and wiggled.",
     "They danced until they were out of breath and fell on the sofa, laughing."},
};
enum { N_PASTIMES = sizeof PASTIMES / sizeof PASTIMES[0] };

typedef struct { const char *seed, *becomes, *result, *share; } Plant;   // "seed": patience

static const Plant PLANTS[] = {
    {"a big striped sunflower seed", "a tall flower",
     "By the end of the summer, it was a sunflower taller than {hero}, with a bright yellow face that "
     "turned to follow the sun.",
     "Birds came to eat its seeds, and {hero} saved a few to plant the next spring."},
    {"a tiny tomato seed", "a plant full of tomatoes",
     "Soon little green tomatoes appeared, and slowly they turned round and red.",
     "{Hero} picked the ripest ones and shared them with {pal.friend}. They were the sweetest "
     "tomatoes {hero.he} had ever tasted."},
    {"a flat white pumpkin seed", "a big pumpkin",
     "A long vine crept across the garden, and on it grew a pumpkin so big that {hero} could hardly lift it.",
     "{Hero.His} {elder} made pumpkin soup, and they invited {pal.friend} to share it with them."},
    {"a speckled bean", "a tall bean plant",
     "The bean plant climbed up a stick, higher and higher, until it was taller than the fence.",
     "{Hero} picked a big bowl of beans for dinner, and everyone said they were delicious."},
    {"a tiny carrot seed", "a crunchy carrot",
     "Under the ground, where nobody could see, something was growing. One day, {hero} pulled on the "
     "leafy top, and out came a long orange carrot!",
     "{Hero} washed it and shared it with {pal.friend}. Crunch, crunch!"},
};
enum { N_PLANTS = sizeof PLANTS / sizeof PLANTS[0] };

enum { ANYONE, PEOPLE_ONLY, FLYERS_ONLY, NON_FLYERS };
typedef struct { const char *skill, *first_try, *practice, *success; int who; } Skill;   // "learn"

static const Skill SKILLS[] = {
    {"ride a bike",
     "{Hero} got on the bike and pushed the pedals. The bike wobbled to the left, then to the right, and "
     "then it tipped over. Bump! {Hero} landed in the grass.",
     "Every afternoon, {hero.his} {elder} held the back of the seat while {hero} pedaled around the yard.",
     "Then one day, {hero.his} {elder} let go, and {hero} kept pedaling all by {hero.himself}! \"I'm "
     "doing it!\" {hero.he} shouted.", NON_FLYERS},
    {"swim",
     "{Hero} stepped into the lake, but when the water reached {hero.his} chin, {hero.he} splashed and "
     "kicked and swallowed a big gulp of water.",
     "The next day, {hero.his} {elder} showed {hero.him} how to float on {hero.his} back and kick slowly. "
     "They practiced every morning in the shallow water.",
     "Then one morning, {hero} kicked and paddled all the way to {hero.his} {elder}'s arms without any help!",
     NON_FLYERS},
    {"fly",
     "{Hero} stood at the edge of the nest and flapped {hero.his} wings as hard as {hero.he} could. But "
     "down {hero.he} went, onto a soft pile of leaves.",
     "Every day, {hero} practiced flapping, first from a low branch and then from a higher one.",
     "One morning, {hero} spread {hero.his} wings and jumped, and the wind lifted {hero.him} up, up, up "
     "into the sky!", FLYERS_ONLY},
    {"jump rope",
     "{Hero} swung the rope over {hero.his} head, but it caught on {hero.his} feet every time.",
     "{Hero} practiced every afternoon: first one jump, then two, then three.",
     "After a week, {hero} could jump twenty times in a row without stopping!", NON_FLYERS},
    {"whistle",
     "{Hero} made {hero.his} lips round and blew. But only air came out, whoosh, with no whistle at all.",
     "{Hero} tried in the morning, at lunch and even in the bath.",
     "Then one day, a tiny sound came out. Tweet! {Hero} blew again, louder. TWEET! {Hero.He} had done it!",
     NON_FLYERS},
    {"tie shoelaces",
     "{Hero} pulled the laces this way and that way, but they only twisted into a big, messy knot.",
     "{Hero.His} {elder} showed {hero.him} how to make two loops and cross them over. {Hero} practiced "
     "on {hero.his} shoes every morning before school.",
     "Then one morning, {hero} tied a perfect bow all by {hero.himself}!", PEOPLE_ONLY},
    {"catch a ball",
     "{Pal.friend} threw the ball, but {hero} closed {hero.his} eyes, and the ball bounced right off "
     "{hero.his} head. Bonk!",
     "Every day, they played catch in the yard. {Pal} threw the ball softly, and {hero} kept {hero.his} "
     "eyes open and on the ball.",
     "One day, {hero} caught ten throws in a row! \"You did it!\" cheered {pal}.", NON_FLYERS},
};
enum { N_SKILLS = sizeof SKILLS / sizeof SKILLS[0] };

typedef struct { const char *loves, *make, *oops, *fix; } Gift;   // "gift": a present goes wrong

static const Gift GIFTS[] = {
    {"flowers",
     "{Hero} went to the meadow and picked the prettiest flowers {hero.he} could find: yellow ones, "
     "purple ones and one big white daisy. {Hero.He} tied them together with a ribbon.",
     "But on the way to the party, a gust of wind blew half of the petals away.",
     "\"The wind took some of the petals,\" {hero} said sadly. But {pal} only laughed and put the flowers "
     "in a cup of water. \"They are still beautiful,\" {pal.he} said."},
    {"stars",
     "{Hero} made a card. On the front, {hero.he} drew {pal} under a sky full of stars, and inside "
     "{hero.he} wrote, \"Happy birthday, my friend!\"",
     "But on the way to the party, it began to rain, and the colors on the card ran together.",
     "{Hero} was worried, but {pal} held up the card and said, \"Look! The stars have rainbows now!\""},
    {"cake",
     "With {hero.his} {elder}'s help, {hero} baked a small cake with strawberries on top.",
     "But on the way, {hero} tripped on a step, and the cake slid to one side of the box. The strawberries "
     "rolled everywhere.",
     "{Pal} only laughed. \"It still smells yummy!\" {pal.he} said, and they ate the messy cake together. "
     "It was delicious."},
    {"music",
     "{Hero} made up a little song just for {pal} and practiced it all day long.",
     "But at the party, {hero} felt shy, and {hero.his} voice came out very small.",
     "Then {hero} saw {pal} smiling, and {hero.he} sang louder and louder. Soon everyone was clapping along."},
    {"shiny things",
     "{Hero} found small shells and smooth stones and put them on a string to make a necklace.",
     "But the string snapped, and the shells rolled under the table.",
     "{Pal} helped pick them all up, and together they made the necklace again with a stronger string."},
};
enum { N_GIFTS = sizeof GIFTS / sizeof GIFTS[0] };

typedef struct { const char *what, *place, *sound, *found, *home, *back, *reunion; } Critter;

static const Critter CRITTERS[] = {      // "rescue": a little animal far from home
    {"a baby bird", "park", "Cheep, cheep!", "under a tall tree",
     "High up in the branches, {hero} could see a little nest.",
     "{Hero.His} {elder} got a ladder from a nearby shed. Very gently, {elder.he} lifted the baby bird "
     "back into its nest.",
     "A moment later, the mother bird flew home with a worm in her beak. The baby bird opened its mouth "
     "wide. Cheep, cheep!"},
    {"a little duckling", "pond", "Peep, peep!", "all alone in the tall grass",
     "Out on the water, a mother duck was swimming in circles and quacking loudly.",
     "{Hero} walked slowly to the edge of the pond, and the duckling waddled right behind {hero.him}, "
     "peep, peep, all the way.",
     "When the mother duck saw her baby, she quacked with joy. The duckling jumped into the water and "
     "swam to her side."},
    {"a tiny kitten", "garden", "Mew, mew!", "under a bush",
     "On the fence, there was a paper sign with a picture of the same kitten. It said: LOST KITTEN. "
     "PLEASE HELP US FIND HER.",
     "{Hero.His} {elder} called the number on the sign, and soon a girl came running down the street.",
     "\"There you are!\" the girl cried, and she hugged the kitten close. \"Thank you so much for "
     "finding her!\""},
    {"a little hedgehog", "backyard", "Sniff, sniff!", "in a flower pot",
     "Past the fence, there was a wild corner full of leaves, where {hero.his} {elder} said hedgehogs "
     "like to live.",
     "{Hero} carried the flower pot to the corner, and the hedgehog crawled out and sniffed the air.",
     "From the leaves came another hedgehog, and then two more! The little one trotted over to them "
     "and snuggled in."},
};
enum { N_CRITTERS = sizeof CRITTERS / sizeof CRITTERS[0] };

// Endings that suit any plot; the two empty alternatives mean half the stories stop after the lesson.
static const char STORY_ENDING[] =
    "[|That night, {hero} fell asleep with a smile on {hero.his} face.|It was a day {hero} would always "
    "remember.|{Hero} wondered what fun tomorrow would bring.|]";

// Shared help for the "brave" plot: the grown-up's encouragement.
static const char ENCOURAGE[] =
    "[{Hero.His} {elder} sat down beside {hero.him}. \"It is okay to feel scared,\" {elder.he} said "
    "softly. \"Being brave means you feel scared and you try anyway.\"|"
    "{Hero.His} {elder} gave {hero.him} a warm hug. \"I am right here with you,\" {elder.he} said. "
    "\"You can do it.\"|"
    "{Hero} remembered what {hero.his} {elder} always said: \"Big worries get smaller when you look at them.\"|"
    "{Hero.His} {elder} held {hero.him} close. \"Let's be brave together,\" {elder.he} whispered. \"One "
    "small step at a time.\"]";

// ----------------------------------------------------------------------------
// the story being written: its slots and its text

enum { STORY_BYTES = 4096, STORY_MAX_SLOTS = 96, STORY_ARENA_BYTES = 4096, STORY_MAX_DEPTH = 8 };

typedef struct { const char *key, *value; } StorySlot;

typedef struct {
    Rng *rng;
    const CharacterKind *hero_kind;     // some plots fit the hero (only birds learn to fly)
    StorySlot slots[STORY_MAX_SLOTS];   // key -> value (a value may itself be a template)
    int n_slots;
    char arena[STORY_ARENA_BYTES];      // storage for keys and values built during casting
    size_t arena_used;
    char text[STORY_BYTES];             // the story so far; stories stay under 1,300 bytes
    size_t len;
    int space_pending;                  // a space is due before the next visible character
    int capital_next;                   // the next letter starts a sentence or a quotation
} StoryDraft;

static int is_upper_ascii(char c) { return c >= 'A' && c <= 'Z'; }
static int is_lower_ascii(char c) { return c >= 'a' && c <= 'z'; }
static char upper_ascii(char c) { return is_lower_ascii(c) ? (char)(c - 'a' + 'A') : c; }
static char lower_ascii(char c) { return is_upper_ascii(c) ? (char)(c - 'A' + 'a') : c; }
static int is_vowel_ascii(char c) { return c != 0 && strchr("aeiouAEIOU", c) != NULL; }

// A copy of a formatted string, kept until the story ends. Never overflows: when the arena is
// full the string is cut (casting uses at most ~1.3 KB of the 4 KB, and at most ~60 slots).
__attribute__((format(printf, 2, 3)))
static const char *story_printf(StoryDraft *st, const char *fmt, ...) {
    char *out = st->arena + st->arena_used;
    size_t room = STORY_ARENA_BYTES - st->arena_used;
    if (room == 0) return "";
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, room, fmt, ap);
    va_end(ap);
    if (n < 0) { out[0] = 0; n = 0; }
    size_t used = (size_t)n + 1;                 // the string and its NUL
    st->arena_used += used < room ? used : room;
    return out;
}

static void story_set(StoryDraft *st, const char *key, const char *value) {
    // A plot may recast a slot (the "brave" plot moves the story to the playground): replace it.
    for (int i = 0; i < st->n_slots; i++)
        if (strcmp(st->slots[i].key, key) == 0) { st->slots[i].value = value; return; }
    if (st->n_slots < STORY_MAX_SLOTS) st->slots[st->n_slots++] = (StorySlot){key, value};
}

// story_set for a role's form: story_set_role(st, "hero", "his", "her") sets {hero.his}.
static void story_set_role(StoryDraft *st, const char *role, const char *form, const char *value) {
    story_set(st, story_printf(st, "%s.%s", role, form), value);
}

static const char *story_find(const StoryDraft *st, const char *key, size_t n) {
    for (int i = 0; i < st->n_slots; i++)
        if (strncmp(st->slots[i].key, key, n) == 0 && st->slots[i].key[n] == 0) return st->slots[i].value;
    return NULL;
}

static size_t story_pick(StoryDraft *st, size_t n) { return (size_t)rng_below(st->rng, n); }

// One of the '|'-separated variants in list, copied into the arena (fixed for the whole story).
static const char *story_pick_variant(StoryDraft *st, const char *list) {
    size_t count = 1;
    for (const char *p = list; *p; p++) count += *p == '|';
    size_t k = story_pick(st, count);
    const char *start = list;
    while (k > 0) { if (*start++ == '|') k--; }
    size_t n = strcspn(start, "|");
    return story_printf(st, "%.*s", (int)n, start);
}

// Replaces "{his}" in a kind's gesture by the character's possessive ("wagged her tail").
static const char *story_with_possessive(StoryDraft *st, const char *gesture, const char *his) {
    const char *at = strstr(gesture, "{his}");
    if (!at) return gesture;
    return story_printf(st, "%.*s%s%s", (int)(at - gesture), gesture, his, at + 5);
}

// ----------------------------------------------------------------------------
// the writer: characters in, tidy English spelling out

static void story_append(StoryDraft *st, char c) {
    if (st->len + 1 < STORY_BYTES) st->text[st->len++] = c;
}

// True when the last word written is the article "a" (standing alone, any case).
static int last_word_is_a(const StoryDraft *st) {
    if (st->len == 0 || lower_ascii(st->text[st->len - 1]) != 'a') return 0;
    if (st->len == 1) return 1;
    char before = st->text[st->len - 2];
    return before == ' ' || before == '\n' || before == '"';
}

static void story_put_char(StoryDraft *st, char c) {
    if (c == ' ') {        // remember it; leading, doubled and pre-punctuation spaces vanish
        if (st->len > 0 && st->text[st->len - 1] != '\n') st->space_pending = 1;
        return;
    }
    if (c == '\n') {       // a paragraph break, never an empty paragraph
        st->space_pending = 0;
        if (st->len > 0 && st->text[st->len - 1] != '\n') story_append(st, '\n');
        st->capital_next = 1;
        return;
    }
    int punctuation = c == '.' || c == ',' || c == '!' || c == '?' || c == ':' || c == ';';
    if (st->space_pending && !punctuation) {
        if (is_vowel_ascii(c) && last_word_is_a(st)) story_append(st, 'n');   // "a apple" -> "an apple"
        story_append(st, ' ');
    }
    st->space_pending = 0;
    char prev = st->len ? st->text[st->len - 1] : '\n';
    if (st->capital_next && is_lower_ascii(c)) c = upper_ascii(c);
    if (is_lower_ascii(c) || is_upper_ascii(c) || (c >= '0' && c <= '9')) st->capital_next = 0;
    story_append(st, c);
    if (c == '.' || c == '!' || c == '?') st->capital_next = 1;
    // An opening quote follows a space and starts a quotation; a closing quote cancels the
    // capital its '!' or '?' asked for, so that "Look!" said Mia.
    if (c == '"') st->capital_next = (prev == ' ' || prev == '\n');
}

// ----------------------------------------------------------------------------
// templates: {slot} and [a|b|c]

static void story_expand(StoryDraft *st, const char *t, size_t n, int depth);

// Index of the ']' that closes the '[' at t[open] (or n if the template is unbalanced).
static size_t closing_bracket(const char *t, size_t open, size_t n) {
    int level = 0;
    for (size_t i = open; i < n; i++) {
        if (t[i] == '[') level++;
        else if (t[i] == ']' && --level == 0) return i;
    }
    return n;
}

// t[0..n) is the inside of [...]: picks one top-level alternative and expands it.
static void story_expand_choice(StoryDraft *st, const char *t, size_t n, int depth) {
    size_t count = 1;
    int level = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] == '[') level++;
        else if (t[i] == ']') level--;
        else if (t[i] == '|' && level == 0) count++;
    }
    size_t k = story_pick(st, count), start = 0;
    level = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && t[i] == '[') level++;
        else if (i < n && t[i] == ']') level--;
        else if (i == n || (t[i] == '|' && level == 0)) {
            if (k == 0) { story_expand(st, t + start, i - start, depth); return; }
            k--;
            start = i + 1;
        }
    }
}

// t[0..n) is the inside of {...}: looks the slot up and writes its value. A missing slot is
// written as "<?key>" so that a template typo shows in the output (the tests look for '<').
static void story_expand_slot(StoryDraft *st, const char *t, size_t n, int depth) {
    char key[64];
    if (n >= sizeof key) n = sizeof key - 1;
    memcpy(key, t, n);
    key[n] = 0;
    // {Hero} and {hero.He}: an upper-case letter at the start of the role or of the form
    // capitalises the value; the slot itself is stored in lower case.
    int capital = is_upper_ascii(key[0]);
    key[0] = lower_ascii(key[0]);
    char *dot = strchr(key, '.');
    if (dot && is_upper_ascii(dot[1])) { capital = 1; dot[1] = lower_ascii(dot[1]); }
    const char *value = story_find(st, key, n);
    if (!value) {
        const char *p = "<?";
        while (*p) story_put_char(st, *p++);
        for (size_t i = 0; i < n; i++) story_put_char(st, key[i]);
        story_put_char(st, '>');
        return;
    }
    if (capital) st->capital_next = 1;
    story_expand(st, value, strlen(value), depth + 1);
}

static void story_expand(StoryDraft *st, const char *t, size_t n, int depth) {
    if (depth > STORY_MAX_DEPTH) return;   // a slot that names itself would otherwise never end
    size_t i = 0;
    while (i < n) {
        if (t[i] == '{') {
            size_t close = i + 1;
            while (close < n && t[close] != '}') close++;
            story_expand_slot(st, t + i + 1, close - i - 1, depth);
            i = close + 1;
        } else if (t[i] == '[') {
            size_t close = closing_bracket(t, i, n);
            story_expand_choice(st, t + i + 1, close - i - 1, depth);
            i = close + 1;
        } else {
            story_put_char(st, t[i++]);
        }
    }
}

static void story_write(StoryDraft *st, const char *t) { story_expand(st, t, strlen(t), 0); }

// ----------------------------------------------------------------------------
// casting: who, what, where

// Fills every form of a character's slots under the name role ("hero", "pal").
// named = 0 leaves an animal nameless: "the fox", called "Fox" when spoken to.
static void cast_character(StoryDraft *st, const char *role, const CharacterKind *kind, int named,
                           const char *avoid_name) {
    int she = kind->gender == 2 ? (int)story_pick(st, 2) : kind->gender;
    const char *name = NULL;
    do {
        if (!kind->person && story_pick(st, 5) < 3) name = PET_NAMES[story_pick(st, N_PET_NAMES)];
        else name = she ? GIRL_NAMES[story_pick(st, N_GIRL_NAMES)] : BOY_NAMES[story_pick(st, N_BOY_NAMES)];
    } while (avoid_name && strcmp(name, avoid_name) == 0);
    const char *adjective;
    switch (story_pick(st, 4)) {
    case 0: adjective = "little"; break;
    case 1: adjective = ADJECTIVES[story_pick(st, N_ADJECTIVES)]; break;
    default: adjective = story_printf(st, "%s little", ADJECTIVES[story_pick(st, N_ADJECTIVES)]); break;
    }
    const char *his = she ? "her" : "his";
    story_set(st, role, named ? name : story_printf(st, "the %s", kind->noun));
    story_set_role(st, role, "name", name);
    const char *call = story_printf(st, "%c%s", upper_ascii(kind->noun[0]), kind->noun + 1);   // "Fox"
    story_set_role(st, role, "call", named ? name : call);
    story_set_role(st, role, "kind", kind->noun);
    story_set_role(st, role, "adj", adjective);
    // How the hero's friend is first mentioned: "her friend Leo", "his friend Pip the frog"
    // (the kind is left out when it goes without saying: a girl, or a frog whose friend is a frog).
    int kind_is_plain = kind->person || kind == st->hero_kind;
    story_set_role(st, role, "friend", !named ? story_printf(st, "{hero.his} friend the %s", kind->noun)
                                 : kind_is_plain ? story_printf(st, "{hero.his} friend %s", name)
                                 : story_printf(st, "{hero.his} friend %s the %s", name, kind->noun));
    story_set_role(st, role, "intro", named ? story_printf(st, "a %s %s named %s", adjective, kind->noun, name)
                                      : story_printf(st, "a %s %s", adjective, kind->noun));
    story_set_role(st, role, "he", she ? "she" : "he");
    story_set_role(st, role, "his", his);
    story_set_role(st, role, "him", she ? "her" : "him");
    story_set_role(st, role, "himself", she ? "herself" : "himself");
    story_set_role(st, role, "moved", kind->moved);
    story_set_role(st, role, "glad", story_with_possessive(st, story_pick_variant(st, kind->glad), his));
    story_set_role(st, role, "home", story_pick_variant(st, kind->home));
    story_set_role(st, role, "limb", kind->limb);
    story_set_role(st, role, "hands", kind->hands);
}

static const StoryPlace *find_place(const char *name) {
    for (int i = 0; i < N_PLACES; i++)
        if (strcmp(PLACES[i].name, name) == 0) return &PLACES[i];
    return &PLACES[0];   // unreachable with the tables above
}

// The place, and three different spots in it where something lost can be.
static void cast_place(StoryDraft *st, const StoryPlace *place) {
    story_set(st, "place", place->name);
    story_set(st, "place.at", place->at);
    story_set(st, "place.to", place->to);
    const char *spots[5];
    const char *p = place->spots;
    for (int i = 0; i < 5; i++) {     // split "a|b|c|d|e"
        size_t n = strcspn(p, "|");
        spots[i] = story_printf(st, "%.*s", (int)n, p);
        p += n + (p[n] == '|');
    }
    for (int i = 0; i < 3; i++) {     // a partial shuffle: spot1..3 are distinct
        size_t j = (size_t)i + story_pick(st, (size_t)(5 - i));
        const char *tmp = spots[i]; spots[i] = spots[j]; spots[j] = tmp;
        story_set(st, story_printf(st, "place.spot%d", i + 1), spots[i]);
    }
}

// The hero's toy; never one that needs open air when the story stays indoors.
static void cast_toy(StoryDraft *st, int indoors) {
    const Toy *t;
    do t = &TOYS[story_pick(st, N_TOYS)]; while (indoors && t->outdoors);
    story_set(st, "obj", t->noun);
    story_set(st, "obj.full", story_printf(st, "%s %s", story_pick_variant(st, t->adjs), t->noun));
    story_set(st, "obj.a", t->a);
    story_set(st, "obj.they", t->plural ? "they" : "it");
    story_set(st, "obj.it", t->plural ? "them" : "it");
    story_set(st, "obj.was", t->plural ? "were" : "was");
    story_set(st, "obj.is", t->plural ? "are" : "is");
    story_set(st, "obj.use", t->use);
    story_set(st, "obj.used", t->used);
}

// {day} opens a scene ("One windy morning"), {sky} is a sentence about the weather. Indoors, the
// weather is what one sees through the window: "Outside, the trees swayed in the wind."
static void cast_weather(StoryDraft *st, int weather, int indoors) {
    story_set(st, "day", story_pick_variant(st, WEATHERS[weather].day));
    const char *sky = story_pick_variant(st, WEATHERS[weather].sky);
    if (indoors) sky = story_printf(st, "Outside, %c%s", lower_ascii(sky[0]), sky + 1);
    story_set(st, "sky", sky);
}

// Everything every plot may use; plots then recast what they need (a place, the weather).
static void cast_common(StoryDraft *st) {
    st->hero_kind = &KINDS[story_pick(st, N_KINDS)];
    cast_character(st, "hero", st->hero_kind, 1, NULL);
    // A nameless friend is "the fox": only when the hero is not a fox too.
    const CharacterKind *pal = &KINDS[story_pick(st, N_KINDS)];
    int named = pal->person || pal == st->hero_kind || story_pick(st, 10) < 7;
    cast_character(st, "pal", pal, named, story_find(st, "hero.name", 9));
    const Grownup *elder = &GROWNUPS[story_pick(st, N_GROWNUPS)];
    story_set(st, "elder", elder->name);
    story_set(st, "elder.he", elder->she ? "she" : "he");
    story_set(st, "elder.his", elder->she ? "her" : "his");
    story_set(st, "elder.him", elder->she ? "her" : "him");
    const StoryPlace *place = &PLACES[story_pick(st, N_PLACES)];
    cast_place(st, place);
    cast_toy(st, place->indoors);
    cast_weather(st, (int)story_pick(st, N_FAIR_WEATHERS), place->indoors);
    story_set(st, "end", STORY_ENDING);
}

// ----------------------------------------------------------------------------
// plots: a setup that casts what the plot needs, and the story skeleton

static const char STORY_OPENING[] =
    "[Once upon a time, there was a {hero.adj} {hero.kind} named {hero}.|"
    "There once was a {hero.adj} {hero.kind} called {hero}.|"
    "{Hero} was a {hero.adj} {hero.kind} who lived {hero.home}.|"
    "Once upon a time, {hero.home}, there lived a {hero.adj} {hero.kind} named {hero}.|"
    "Not long ago, {hero.home}, lived a {hero.adj} {hero.kind}. {Hero.His} name was {hero}.|"
    "This is a story about a {hero.adj} {hero.kind} named {hero}, who lived {hero.home}.|"
    "Long ago, {hero.home}, there was a {hero.adj} {hero.kind} called {hero}.]";

static void setup_no_extras(StoryDraft *st) { (void)st; }

static const char PLOT_LOST[] =
    " [{Hero.His} favorite thing in the whole world was {obj.a} {obj.full}.|"
    "{Hero.He} had {obj.a} {obj.full}, and {hero.he} loved {obj.it} very much.|"
    "{Hero.His} {elder} had given {hero.him} {obj.a} {obj.full}, and {hero.he} loved {obj.it} very much.] "
    "[Every day, {hero.he} liked to {obj.use}.|{Hero.He} took {obj.it} everywhere {hero.he} went.|"
    "{Hero.He} never went anywhere without {obj.it}.]"
    "\n{day}, {hero} [went|{hero.moved}] {place.to} to play. {sky} {Hero.He} {obj.used} [for a long time|all "
    "morning] and [had lots of fun|laughed and laughed|hummed a happy tune]. Then {hero.he} put {obj.it} down "
    "to [have a snack|get a drink of water|rest for a little while|look at a funny bug]. When {hero.he} "
    "[looked back|came back|turned around], {obj.they} {obj.was} gone! [{Hero.He} felt very sad.|Big tears "
    "filled {hero.his} eyes.|{Hero.His} heart sank.] \"[Oh no!|Oh dear!] Where {obj.is} my {obj}?\" {hero.he} "
    "[cried|said in a small voice|wondered out loud]."
    "\n{Hero} looked {place.spot1}, but {obj.they} {obj.was} not there. [Then {hero.he}|{Hero.He}] "
    "[looked|searched] {place.spot2}, but {obj.they} {obj.was} not there either. [Just then|At that "
    "moment], {pal.friend} came by. \"[Why do you look so sad?|What is wrong?|Why are you crying?]\" "
    "{pal.he} asked. {Hero} told {pal.him} about the lost {obj}. \"[Don't worry,\" said {pal}. \"I will "
    "help you look.\"|I will help you,\" said {pal}. \"Two friends can look better than one.\"]"
    "\n[{Pal} thought for a moment.|{Pal} had a good idea.|{Pal} looked around carefully.] \"Did you look "
    "{place.spot3}?\" {pal.he} asked. They looked {place.spot3} together, and there {obj.was} the "
    "{obj.full}! [{Hero} {hero.glad}.|{Hero} held {hero.his} {obj} close.] \"Thank you, {pal.call}!\" "
    "{hero.he} said. \"You are a [true|kind|wonderful] friend.\""
    "[\n| ][From that day on|After that], {hero} [always kept {hero.his} {obj} in a safe place|was careful "
    "never to leave {hero.his} {obj} behind|put {hero.his} {obj} away before {hero.he} did anything else]. "
    "{end}";

static const char PLOT_SHARE[] =
    " [{Hero.He} loved to play {place.at} with {pal.friend}.|{Hero.He} and {pal.friend} often played "
    "{place.at}.]"
    "\n{day}, {hero.his} {elder} gave {hero.him} {obj.a} {obj.full}. {obj.They} {obj.was} brand new! "
    "[{Hero} smiled from ear to ear.|{Hero} {hero.glad}.|{Hero} could not stop smiling.] {Hero.He} "
    "[took|carried] {obj.it} {place.to} and began to {obj.use}. [Soon|Before long] {pal} came along. "
    "{Pal.His} eyes [grew wide|lit up] when {pal.he} saw the {obj.full}. \"[Wow!|Oh!|How lovely!] Can I "
    "play with {obj.it} too?\" {pal.he} asked."
    "\n{Hero} held {obj.it} [close|tight]. \"No, {obj.they} {obj.is} mine,\" {hero.he} said. \"[I want to "
    "play by myself.|I got {obj.it} first.|You might break {obj.it}.]\" {Pal}'s smile went away. {Pal.He} "
    "[walked|{pal.moved}] off and sat down all alone."
    "\n{Hero} {obj.used}, but [it was not fun anymore|something did not feel right|it felt boring all by "
    "{hero.himself}]. {Hero.He} kept looking at {pal}, who looked [so sad|so lonely]. [{Hero.He} remembered "
    "what {hero.his} {elder} always said: \"A toy is more fun when you share it.\"|{Hero.His} tummy felt "
    "heavy and funny.|{Hero.He} thought about how {hero.he} would feel if {pal} had said no to {hero.him}.] "
    "{Hero} {hero.moved} over to {pal}. \"I am sorry,\" {hero.he} said. \"[Do you want to play with my "
    "{obj}? We can take turns.|Let's play with my {obj} together.]\" {Pal} [looked up and smiled|smiled a "
    "big smile]. \"[Yes, please!|I would like that!|Thank you, {hero}!]\""
    "\n[They took turns|They played together] [all afternoon|until the sun went down|for a long, long "
    "time], and they laughed [so much that their tummies hurt|and laughed]. [{Hero} learned that sharing "
    "made the fun twice as big.|Playing together was much more fun than playing alone.|Sharing had turned "
    "a lonely game into a happy one.] {end}";

static void setup_brave(StoryDraft *st) {
    const Fear *f = &FEARS[story_pick(st, N_FEARS)];
    if (f->place[0]) cast_place(st, find_place(f->place));
    story_set(st, "fear.what", f->what);
    story_set(st, "fear.scene", f->scene);
    story_set(st, "fear.worry", f->worry);
    story_set(st, "fear.brave", f->brave);
    story_set(st, "fear.reveal", f->reveal);
    story_set(st, "fear.after", f->after);
    story_set(st, "encourage", ENCOURAGE);
}

static const char PLOT_BRAVE[] =
    " [{Hero.He} was a happy {hero.kind}, but there was one thing {hero.he} was afraid of: {fear.what}.|"
    "{Hero.He} was not afraid of much, except for one thing: {fear.what}.|{Hero.He} was brave about most "
    "things, but {fear.what} made {hero.him} feel very small.]"
    "\n{fear.scene} \"{fear.worry}\" {hero} [whispered|said in a shaky voice|said, hiding {hero.his} face]."
    "\n{encourage} {fear.brave}"
    "\n{fear.reveal} {fear.after} [{Hero} learned that being brave means trying, even when you feel "
    "scared.|Sometimes scary things are not so scary once you look closely.|{Hero} felt braver than ever "
    "before.] {end}";

static void setup_help(StoryDraft *st) {
    const Trouble *t = &TROUBLES[story_pick(st, N_TROUBLES)];
    cast_place(st, find_place(t->place));
    story_set(st, "trouble.problem", t->problem);
    story_set(st, "trouble.cry", t->cry);
    story_set(st, "trouble.fix", t->fix);
    story_set(st, "trouble.after", t->after);
}

static const char PLOT_HELP[] =
    " [{Hero.He} always tried to help others.|{Hero.He} had a kind heart and lots of friends.|Everyone "
    "knew {hero} as a good friend who liked to help.]"
    "\n{day}, {hero} was [playing|having fun|out for a walk] {place.at} when {hero.he} heard someone "
    "[crying|calling for help|sniffling]. It was {pal.friend}. {trouble.problem}"
    "[\n| ]\"{trouble.cry}\" {pal} [cried|said with a sniff|sobbed]. \"[Don't worry, {pal.call}. I will "
    "help you,\" said {hero}.|I am here, {pal.call},\" said {hero}. \"Let me help.\"] {trouble.fix}"
    "\n[{Pal} {pal.glad}.|{Pal} gave {hero} a big hug.|{Pal} smiled a big smile.] \"Thank you, {hero}! "
    "You are a [true|real|wonderful] friend,\" {pal.he} said. {trouble.after} [{Hero} felt warm and happy "
    "inside.|{Hero.His} heart felt light and happy.] [Helping a friend felt even better than playing.|It "
    "feels good to help a friend.|A little help can make a big difference.] {end}";

static void setup_trip(StoryDraft *st) {
    const Destination *d = &DESTINATIONS[story_pick(st, N_DESTINATIONS)];
    const Hitch *h;
    do h = &HITCHES[story_pick(st, N_HITCHES)]; while (h->outdoors && !d->outdoors);
    story_set(st, "dest.name", d->name);
    story_set(st, "dest.picture", d->picture);
    story_set(st, "dest.sights", d->sights);
    story_set(st, "dest.best", d->best);
    story_set(st, "hitch", h->text);
    cast_weather(st, SUNNY, 0);
}

static const char PLOT_TRIP[] =
    " [{Hero.He} loved adventures.|{Hero.He} had never been very far from home.|{Hero.He} always wanted "
    "to see new places.]"
    "\n{day}, {hero.his} {elder} said, \"[Today we are going on a trip to {dest.name}!|Pack your bag! We "
    "are going to {dest.name} today!]\" {Hero} {hero.glad}. They packed [a picnic basket|some sandwiches "
    "and apple juice|a blanket and some snacks] and set off [by train. {Hero} pressed {hero.his} nose to "
    "the window and watched the fields go by.|in the car. They sang songs all the way, and {hero} counted "
    "the red cars on the road.|on a big bus. {Hero} sat by the window and waved at everyone they passed.]"
    "\n{dest.sights} {dest.best}"
    "\n{hitch}"
    "[\n| ][When the sun began to set|At the end of the day|In the evening], they went home. {Hero} was "
    "[tired but happy|sleepy and happy]. [Before bed, {hero.he} drew a picture of {dest.picture} and hung "
    "it on the wall.|{Hero.He} wanted to tell {pal.friend} all about it.|{Hero.He} hoped they would go "
    "back again soon.] {end}";

static void setup_sorry(StoryDraft *st) {
    const Mistake *m = &MISTAKES[story_pick(st, N_MISTAKES)];
    cast_place(st, find_place(m->place));
    story_set(st, "mistake.setup", m->setup);
    story_set(st, "mistake.accident", m->accident);
    story_set(st, "mistake.confess", m->confess);
    story_set(st, "mistake.fix", m->fix);
}

static const char PLOT_SORRY[] =
    " [{Hero.He} played with {pal.friend} almost every day.|{Hero.He} and {pal.friend} did everything "
    "together.]"
    "\n{day}, they were playing {place.at}. {mistake.setup} {mistake.accident}"
    "\n[{Hero} froze.|{Hero.His} face turned red.|{Hero} stood very still.] {Pal} saw what had happened, "
    "and {pal.his} eyes filled with tears. [At first, {hero} wanted to say it was not {hero.his} "
    "fault.|For a moment, {hero} wanted to run away and hide.|{Hero} wanted to pretend that nothing had "
    "happened.] But [{hero.he} knew that would not be right|deep inside, {hero.he} knew what to do|then "
    "{hero.he} took a deep breath]. \"I am sorry, {pal.call},\" said {hero}. \"It was my fault. "
    "{mistake.confess}\""
    "[\n| ]{Pal} [wiped {pal.his} eyes|sniffed] and nodded. \"Thank you for telling me the truth,\" "
    "{pal.he} said. \"[Can I help make it better?\" asked {hero}.|Let me help fix it,\" said {hero}.] "
    "{mistake.fix} [{Pal} smiled, and so did {hero}.|Soon both friends were laughing again.] [{Hero} "
    "learned that it is always best to tell the truth and say sorry.|Saying sorry had made everything "
    "better.|A true sorry can mend a lot.] {end}";

static void setup_build(StoryDraft *st) {
    const Project *p = &PROJECTS[story_pick(st, N_PROJECTS)];
    cast_place(st, find_place(p->place));
    cast_weather(st, p->weather, 0);
    story_set(st, "build", p->name);
    story_set(st, "build.start", p->start);
    story_set(st, "build.setback", p->setback);
    story_set(st, "build.fix", p->fix);
    story_set(st, "build.result", p->result);
}

static const char PLOT_BUILD[] =
    " [{Hero.He} loved to make things with {hero.his} {hero.hands}.|{Hero.He} was always building "
    "something.]"
    "\n{day}, {hero} and {pal.friend} were playing {place.at}. \"Let's build {build}!\" said {pal}. "
    "\"[Yes! A big one!|What a great idea!|Yes, let's!]\" said {hero}. {build.start} {build.setback}"
    "\n[{Hero} felt like crying.|{Hero} sat down with a sigh.|{Hero} stamped {hero.his} foot.] \"[All our "
    "hard work is gone,|Now we have to start all over,]\" {hero.he} said. {Pal} sat down next to "
    "{hero.him}. \"[Let's try once more,\" {pal.he} said. \"We can make it even better this time.\"|We can fix "
    "it,\" {pal.he} said. \"I know we can.\"]"
    "\n{build.fix} {build.result} {Hero} and {pal} [looked at their work and smiled|felt very proud|gave "
    "each other a high five]. [They had not given up, and that made it even better.|Trying again had been "
    "worth it.|Good things can take more than one try.] {end}";

static void setup_rain(StoryDraft *st) {
    const StoryPlace *place;
    do place = &PLACES[story_pick(st, N_PLACES)]; while (place->indoors);
    cast_place(st, place);
    const Pastime *p = &PASTIMES[story_pick(st, N_PASTIMES)];
    story_set(st, "pastime.offer", p->offer);
    story_set(st, "pastime.doing", p->doing);
    story_set(st, "pastime.result", p->result);
    cast_weather(st, RAINY, 0);
}

static const char PLOT_RAIN[] =
    " [{Hero.He} loved to play outside more than anything.|{Hero.He} liked sunny days best of all.]"
    "\n[One morning|On a gray morning], {hero} woke up early. Today {hero.he} was going {place.to} with "
    "{hero.his} {elder}! But when {hero.he} looked out the window, {hero.he} saw [gray clouds and falling "
    "rain|rain pouring down from the sky|big drops of rain running down the glass]. [Pitter, patter, "
    "pitter, patter.|Drip, drop, drip, drop.] \"Oh no,\" said {hero}. \"[Now we can't go.|The whole day "
    "is ruined.]\" {Hero.He} pressed {hero.his} nose against the glass and sighed."
    "\n{Hero.His} {elder} [smiled|hugged {hero.him}]. \"[A rainy day can be fun too,\" {elder.he} "
    "said.|We can have fun inside,\" {elder.he} said.] \"{pastime.offer}\" {pastime.doing} {pastime.result}"
    "\n[By the time they were done|After lunch|In the afternoon], the rain had stopped. [A bright rainbow "
    "stretched across the sky.|The sun peeked out from behind the clouds.] {Hero} put on {hero.his} boots "
    "and [jumped in every puddle|splashed through the puddles] all the way {place.to}. [It turned out to "
    "be a wonderful day after all.|Even a gray day can be full of fun.|Rain or shine, it had been a good "
    "day.] {end}";

static void setup_seed(StoryDraft *st) {
    cast_place(st, find_place("garden"));
    const Plant *p = &PLANTS[story_pick(st, N_PLANTS)];
    story_set(st, "plant.seed", p->seed);
    story_set(st, "plant.becomes", p->becomes);
    story_set(st, "plant.result", p->result);
    story_set(st, "plant.share", p->share);
    cast_weather(st, SUNNY, 0);
}

static const char PLOT_SEED[] =
    " [{Hero.He} loved flowers and green, growing things.|{Hero.He} liked to help in the garden.|{Hero.He} "
    "liked to dig in the dirt and look for worms.]"
    "\n{day}, {hero.his} {elder} gave {hero.him} {plant.seed}. \"[If you plant it and take good care of "
    "it, it will grow into {plant.becomes},|Plant this, and one day it will grow into {plant.becomes},]\" "
    "{elder.he} said. {Hero} dug a small hole, [dropped the seed in|put the seed inside] and covered it "
    "with soil. Then {hero.he} gave it [some water|a little drink of water]."
    "\n[The next morning|Early the next day], {hero} ran outside to look. [Nothing!|There was only dirt.] "
    "[The day after that, there was still nothing.|The next day, there was still nothing to see.] \"[Why "
    "is it not growing?|Where is my plant?]\" {hero} asked. \"Good things take time,\" said {hero.his} "
    "{elder}. \"[Keep giving it water and sunshine, and be patient.|Seeds grow slowly, under the ground "
    "where we cannot see. Be patient.]\""
    "\nSo {hero} waited. Every day {hero.he} watered the spot [and sang it a little song|and pulled out "
    "the weeds around it|and told it all about {hero.his} day]. [Then one morning|At last, one morning], "
    "{hero.he} saw a tiny green sprout poking out of the ground! {Hero} {hero.glad}."
    "[\n| ][Day by day|Week after week], the sprout grew bigger. {plant.result} {plant.share} [{Hero} "
    "learned that waiting is hard, but some things are worth the wait.|Being patient had been worth "
    "it.|] {end}";

static void setup_learn(StoryDraft *st) {
    const CharacterKind *hero = st->hero_kind;
    const Skill *s;
    for (;;) {
        s = &SKILLS[story_pick(st, N_SKILLS)];
        if (s->who == ANYONE) break;
        if (s->who == PEOPLE_ONLY && hero->person) break;
        if (s->who == FLYERS_ONLY && hero->flies) break;
        if (s->who == NON_FLYERS && !hero->flies) break;
    }
    story_set(st, "skill", s->skill);
    story_set(st, "skill.first_try", s->first_try);
    story_set(st, "skill.practice", s->practice);
    story_set(st, "skill.success", s->success);
}

static const char PLOT_LEARN[] =
    " [More than anything, {hero} wanted to learn to {skill}.|{Hero.He} dreamed of learning to "
    "{skill}.|{Hero.He} watched the others {skill} and wished {hero.he} could do it too.]"
    "\n[{day}, {hero.he} decided to try.|{day}, {hero.he} said, \"Today is the day!\"] {skill.first_try}"
    "\n[{Hero} felt like giving up.|{Hero.His} face got hot, and {hero.he} wanted to cry.|{Hero} sat down "
    "and frowned.] \"I will never learn to {skill},\" {hero.he} said. {Hero.His} {elder} [hugged "
    "{hero.him}|knelt beside {hero.him}|sat down next to {hero.him}]. \"[Nobody learns in one "
    "day,|Everybody makes mistakes at first,|Learning takes time,]\" {elder.he} said. \"[Every time you "
    "try, you get a little better.|Let's try again tomorrow.|Even I had to practice a lot.]\""
    "\n{skill.practice} {skill.success}"
    "[\n| ][{Hero} was so proud of {hero.himself}.|{Hero.His} {elder} cheered and clapped.|{Hero} could "
    "not stop smiling.] [{Hero} learned that trying again and again is how we learn new things.|If you "
    "keep trying, you can do hard things.|Practice had made all the difference.] {end}";

static void setup_gift(StoryDraft *st) {
    const Gift *g = &GIFTS[story_pick(st, N_GIFTS)];
    story_set(st, "gift.loves", g->loves);
    story_set(st, "gift.make", g->make);
    story_set(st, "gift.oops", g->oops);
    story_set(st, "gift.fix", g->fix);
}

static const char PLOT_GIFT[] =
    " [{Hero.He} loved to make others smile.|{Hero.He} liked to make surprises for {hero.his} friends.]"
    "\n{day}, {hero} remembered that the next day was the birthday of {pal.friend}. \"I want to give "
    "{pal.him} something special,\" {hero} said. But {hero.he} had no money to buy a present. \"[The best "
    "presents come from the heart,|You don't need money to make a good present,]\" said {hero.his} "
    "{elder}. \"What does {pal} love most?\" {Hero} thought and thought. Then {hero.he} knew! {Pal} loved "
    "{gift.loves}."
    "\n{gift.make} {gift.oops}"
    "\n{gift.fix} Then {pal} [hugged {hero}|gave {hero} a big hug]. \"Thank you! [This is the best present "
    "ever.|This is my best birthday ever.]\" [{Hero} learned that a gift made with love is worth more than "
    "anything from a shop.|{Hero} {hero.glad}.] {end}";

static void setup_new_friend(StoryDraft *st) {
    // The newcomer must have a name to say: recast the friend as named, from a fresh kind.
    const CharacterKind *pal = &KINDS[story_pick(st, N_KINDS)];
    cast_character(st, "pal", pal, 1, story_find(st, "hero.name", 9));
    // Newcomers are met out of doors or at school, not in the hero's own kitchen.
    const StoryPlace *place;
    do place = &PLACES[story_pick(st, N_PLACES)]; while (place->indoors && strcmp(place->name, "school") != 0);
    cast_place(st, place);
    cast_toy(st, place->indoors);
}

static const char PLOT_NEW_FRIEND[] =
    " {Hero.He} had {obj.a} {obj.full}, and {hero.he} liked to {obj.use} {place.at}."
    "\n{day}, {hero} saw someone new {place.at}. It was a {pal.adj} {pal.kind} [{hero.he} had never seen "
    "before|who had just moved in nearby]. The {pal.kind} was standing all alone [and looking at the "
    "ground|and watching the others play]. [{Pal.He} looked shy.|{Pal.He} did not say a word to "
    "anyone.|Nobody was playing with {pal.him}.]"
    "\n{Hero} felt a little shy too. But then {hero.he} [remembered how it felt to be new|thought about "
    "how lonely it must be to have no friends]. {Hero.He} {hero.moved} over and said, \"[Hi! I'm {hero}. "
    "What's your name?|Hello! My name is {hero}. Who are you?]\" \"[My name is {pal},|I'm {pal},]\" said "
    "the {pal.kind} [quietly|in a soft voice]. \"We just moved here.\""
    "\n\"Do you want to play with my {obj}?\" asked {hero}. {Pal}'s face lit up. \"[Yes, please!|I would "
    "love to!]\" [They played until it was time for dinner.|They played together all afternoon.] {Hero} "
    "showed {pal} how to {obj.use}, and {pal} showed {hero} [a funny dance|a new game|a secret hiding "
    "spot|how to make a silly face]."
    "[\n| ]Before {pal} left, {pal.he} said, [\"I was scared I would not have any friends here.\" {Hero} "
    "smiled. \"Now you have one!\"|\"I am so glad you said hello.\" {Hero} smiled. \"Me too! See you "
    "tomorrow!\"] [From that day on|After that day], {hero} and {pal} were the best of friends. {end}";

static void setup_rescue(StoryDraft *st) {
    const Critter *c = &CRITTERS[story_pick(st, N_CRITTERS)];
    cast_place(st, find_place(c->place));
    story_set(st, "critter", c->what);
    story_set(st, "critter.sound", c->sound);
    story_set(st, "critter.found", c->found);
    story_set(st, "critter.home", c->home);
    story_set(st, "critter.back", c->back);
    story_set(st, "critter.reunion", c->reunion);
}

static const char PLOT_RESCUE[] =
    " [{Hero.He} loved all animals, big and small.|{Hero.He} always noticed the little things around "
    "{hero.him}.]"
    "\n{day}, {hero} was [walking|playing] {place.at} with {hero.his} {elder} when {hero.he} heard a tiny "
    "sound. \"{critter.sound}\" There, {critter.found}, was {critter}. [It was shaking.|It looked scared "
    "and alone.]"
    "\n\"[Can we keep it?|Can I keep it, please?]\" {hero} asked. \"[It is so small and cute!|I will take "
    "good care of it!]\" [{Hero.His} {elder} shook {elder.his} head gently.|{Hero.His} {elder} knelt down "
    "beside {hero.him}.] \"It is not ours to keep,\" {elder.he} said. \"[Somebody is missing this little "
    "one.|Its family must be looking for it.] Let's help it get home.\""
    "\n{critter.home} {critter.back} {critter.reunion}"
    "[\n| ]{Hero} [felt a warm glow inside|smiled from ear to ear]. [Keeping the little animal would "
    "have been nice, but helping it home felt even better.|{Hero} learned that being kind sometimes "
    "means letting go.] {end}";

static void setup_race(StoryDraft *st) {
    const StoryPlace *place;
    do place = &PLACES[story_pick(st, N_PLACES)]; while (place->indoors);
    cast_place(st, place);
}

static const char PLOT_RACE[] =
    " {Hero.He} was very fast, and {hero.he} loved to win."
    "\n{day}, there was a big race {place.at}. {Hero} and {pal.friend} stood at the starting line with "
    "all the others. \"[Ready, set, go!|On your marks, get set, go!]\" called {hero.his} {elder}. {Hero} "
    "{hero.moved} as fast as {hero.he} could, and soon only {hero} and {pal} were in front."
    "\n[The finish line was very close.|They were almost at the end.] [{Hero} could almost hear the "
    "cheering.|{Hero} was sure {hero.he} would win.] But then {pal} tripped over [a stone|a root|{pal.his} "
    "own feet] and fell down. \"[Ow!|Ouch!]\" {pal.he} cried."
    "\n{Hero} stopped. If {hero.he} kept going, {hero.he} would win the race. But {hero.his} friend was "
    "hurt. {Hero} turned back and helped {pal} up. \"[Are you okay?|Are you hurt?]\" {hero.he} asked. "
    "\"I think so,\" said {pal}, rubbing {pal.his} {pal.limb}. The others [ran|raced] past them, but "
    "{hero} did not mind. The two friends walked to the finish line together, side by side, and everyone "
    "[clapped and cheered|cheered for them]."
    "[\n| ]{Hero} did not win a ribbon that day, but {hero.his} {elder} gave {hero.him} a big hug. \"I am "
    "prouder of you than if you had won,\" {elder.he} said. [{Hero} learned that being a good friend is "
    "better than winning.|{Hero} knew {hero.he} had done the right thing.] {end}";

static void setup_tidy(StoryDraft *st) {
    cast_place(st, find_place("bedroom"));
    cast_toy(st, 0);   // the toy that turns up under the bed: any toy at all
}

static const char PLOT_TIDY[] =
    " {Hero.He} loved to play, but {hero.he} did not love to tidy up."
    "\n{day}, {hero.his} room was [a big mess|a terrible mess]. There were toys on the floor, clothes on "
    "the bed and pillows everywhere. \"Please tidy up your room,\" said {hero.his} {elder}. \"[But it is "
    "too much!|I don't want to!]\" {hero} [groaned|said with a frown]. \"[It will take forever.|There is "
    "too much stuff.]\""
    "\n{Hero.His} {elder} smiled. \"[Let's make it a game.|What if we make it fun?] [Every toy has to "
    "find its way home before the song ends.\" Then {elder.he} turned on a happy song.|Let's see how much "
    "you can put away before the timer rings.\" Then {elder.he} set the kitchen timer.]"
    "\n{Hero} [hurried|raced] around the room. The toys went into the toy box, the clothes went into the "
    "basket and the pillows went back on the bed. Then, under the bed, {hero} found something. {obj.They} "
    "{obj.was} {hero.his} {obj.full}! {obj.They} had been lost for weeks."
    "[\n| ]\"I found my {obj}!\" {hero} shouted. [Soon the whole room was clean.|In no time, the room "
    "was neat and tidy.] {Hero} {hero.glad}. \"Tidying up is not so bad,\" {hero.he} said. \"[And now I "
    "know where everything is.|I can even see the floor!]\" [From then on, {hero} tidied {hero.his} room "
    "every evening.|{Hero} learned that a big job is easier when you make it fun.] {end}";

typedef struct {
    const char *name;                // for tests and debugging
    void (*setup)(StoryDraft *st);   // casts what this plot needs beyond cast_common()
    const char *text;
} StoryPlot;

// Every plot has a problem and its resolution; story_generate() picks one uniformly.
static const StoryPlot STORY_PLOTS[] = {
    {"lost", setup_no_extras, PLOT_LOST},
    {"share", setup_no_extras, PLOT_SHARE},
    {"brave", setup_brave, PLOT_BRAVE},
    {"help", setup_help, PLOT_HELP},
    {"trip", setup_trip, PLOT_TRIP},
    {"sorry", setup_sorry, PLOT_SORRY},
    {"build", setup_build, PLOT_BUILD},
    {"rain", setup_rain, PLOT_RAIN},
    {"seed", setup_seed, PLOT_SEED},
    {"learn", setup_learn, PLOT_LEARN},
    {"gift", setup_gift, PLOT_GIFT},
    {"new friend", setup_new_friend, PLOT_NEW_FRIEND},
    {"rescue", setup_rescue, PLOT_RESCUE},
    {"race", setup_race, PLOT_RACE},
    {"tidy", setup_tidy, PLOT_TIDY},
};
enum { N_STORY_PLOTS = sizeof STORY_PLOTS / sizeof STORY_PLOTS[0] };

// ----------------------------------------------------------------------------
// story_generate

// True when a cut before text[i] leaves whole sentences: the text so far ends with . ! or ?
// (maybe followed by a closing quote) and a space, a paragraph break or the end comes next.
static int sentence_ends_at(const char *text, size_t len, size_t i) {
    if (i == 0 || (i < len && text[i] != ' ' && text[i] != '\n')) return 0;
    char c = text[i - 1];
    if (c == '"' && i >= 2) c = text[i - 2];
    return c == '.' || c == '!' || c == '?';
}

// Copies the story into buf (cap > 0). When it does not fit in cap - 1 bytes it is cut after the
// last whole sentence that fits, else after the last whole word; a cap smaller than the first
// word gives "". Either way the cut falls just before a space or a newline, so the result
// never ends with one.
static size_t copy_story(const char *text, size_t len, char *buf, size_t cap) {
    size_t n = len;
    if (n > cap - 1) {
        n = cap - 1;
        size_t cut = n;
        while (cut > 0 && !sentence_ends_at(text, len, cut)) cut--;
        if (cut == 0) {                        // not even one sentence fits: cut between words
            cut = n;
            while (cut > 0 && text[cut] != ' ' && text[cut] != '\n') cut--;
        }
        n = cut;
    }
    memcpy(buf, text, n);
    buf[n] = 0;
    return n;
}

// One story from the given plot (tests use this to cover every plot). Same contract as below.
static size_t story_generate_plot(Rng *rng, int plot, char *buf, size_t cap) {
    StoryDraft st;     // ~10 KB on the stack, so separate threads can generate at once
    st.rng = rng;
    st.n_slots = 0;
    st.arena_used = 0;
    st.len = 0;
    st.space_pending = 0;
    st.capital_next = 1;
    cast_common(&st);
    STORY_PLOTS[plot].setup(&st);
    story_write(&st, STORY_OPENING);
    story_write(&st, STORY_PLOTS[plot].text);
    while (st.len > 0 && st.text[st.len - 1] == '\n') st.len--;   // no empty last paragraph
    if (cap == 0) return 0;
    return copy_story(st.text, st.len, buf, cap);
}

// Writes one story (plain text, paragraphs separated by "\n", no trailing separator) into buf
// and returns its length in bytes (< cap and NUL-terminated when cap > 0). Deterministic in *rng.
// Stories are 100-300 words (about 550-1,300 bytes); with a smaller cap the story is cut after
// its last whole sentence that fits (or its last whole word), and cap == 0 writes nothing.
// The rng advances by the same amount whatever cap is.
size_t story_generate(Rng *rng, char *buf, size_t cap) {
    int plot = (int)rng_below(rng, N_STORY_PLOTS);
    return story_generate_plot(rng, plot, buf, cap);
}
