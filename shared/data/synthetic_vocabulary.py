"""The vocabulary of the SYNTHETIC demo store (``shared/data/synthetic.py``): the real
Wayfair class taxonomy with, for each class, its family, the nouns titles use and the words
shoppers use instead; each family's colours, materials, sizes, prices and adjectives; the
groups of closely related classes; how shoppers phrase attributes; brand syllables.

Data tables, and the small functions that read them; everything generated from them is
synthetic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from shared.paths import shared_data_dir

ATTRIBUTE_KEYS = ("colour", "material", "style", "size")

# Class; family; nouns used in titles; words shoppers use (often absent from titles);
# optional size set overriding the family's ("none": the class has no size).
_CLASS_TABLE = """
Accent Chairs; seating; armchair, accent chair, club chair, wingback chair, slipper chair, barrel chair, side chair; chair, armchair, reading chair, living room chair, comfy chair
Accent Chests / Cabinets; storage; accent cabinet, accent chest, storage cabinet, credenza, cupboard, console cabinet; cabinet, chest, storage cabinet, cupboard
Accent Pillows; textile; throw pillow, pillow cover, lumbar pillow, square pillow, pillow insert; pillow, throw pillows, couch pillow, decorative pillow; pillow
Accent Stools; seating; stool, footstool, vanity stool, step stool, pouf stool; small stool, stool, footstool
Adjustable Beds; beds; adjustable base, power base, adjustable foundation, massage base; adjustable bed, electric bed, adjustable bed frame
Area Rugs; rugs; rug, area rug, runner, flatweave rug, shag rug, washable rug, hand-tufted rug; carpet, rug, living room rug, area carpet
Armoires & Wardrobes; bedroom; armoire, wardrobe, clothes closet, wardrobe cabinet; wardrobe, armoire, closet, clothes cabinet
Awnings; outdoor; awning, retractable awning, door canopy, window awning; awning, patio cover, sun shade, porch cover
Bar Stools; dining; bar stool, counter stool, swivel stool, backless stool, saddle stool; barstool, counter stool, kitchen stool, bar chair, island stools; height
Barn Door Hardware; hardware; barn door hardware kit, sliding door track, rolling door hardware, flat track kit; barn door, barn door hardware, sliding door track, barn door kit; none
Bars & Bar Sets; dining; home bar, bar cabinet, wine bar, bar unit, pub cabinet; bar, home bar, bar set, liquor cabinet, dry bar
Bath Accessories; bath; soap dispenser, toothbrush holder, bathroom accessory set, tumbler, vanity tray, lotion pump; bathroom accessories, soap dispenser, bath set, toothbrush holder
Bath Rugs & Mats; bath_textile; bath mat, bath rug, shower mat, contour rug, memory foam mat; bath mat, bathroom rug, bathroom mat, shower rug
Bathroom Sink Faucets; bath_fixture; widespread faucet, centerset faucet, single hole faucet, lavatory faucet, vessel faucet; bathroom faucet, sink faucet, bath faucet, tap, bathroom sink faucet
Bathroom Storage; bath_storage; over-the-toilet storage, linen tower, bathroom cabinet, medicine cabinet, wall cabinet, linen cabinet; bathroom cabinet, bathroom storage, over toilet shelf, medicine cabinet
Bed Accessories; bedding; bed skirt, bed risers, bed rail, sheet straps, dust ruffle; bed skirt, bed risers, dust ruffle, bed extender
Bed Frames; beds; platform bed, metal bed frame, upholstered bed, panel bed, sleigh bed, low profile bed; bed frame, bed, platform bed, bedframe
Bedding Sets; bedding; comforter set, duvet cover set, quilt set, bedspread set, coverlet set; comforter, bedding set, duvet, quilt, bedspread, bedding
Beds; beds; platform bed, canopy bed, storage bed, sleigh bed, four poster bed, upholstered bed, wingback bed; bed, bed frame, queen bed, bedroom bed
Benches; seating; bench, storage bench, entryway bench, upholstered bench, bedroom bench, settee bench; bench, entry bench, shoe bench, end of bed bench
Bike And Sport Racks; fitness; bike rack, bike stand, sports rack, ball storage rack, wall bike mount; bike rack, bike storage, sports equipment rack, bike hanger
Bird Play Stand & Playcenters; pets; bird play stand, parrot playstand, bird perch, bird playground; bird stand, parrot stand, bird perch, bird gym
Bookcases; storage; bookcase, bookshelf, etagere, ladder shelf, cube bookcase, library shelf; bookshelf, bookcase, book shelf, shelves
Boxes, Bins, Baskets, & Buckets; storage; storage basket, storage bin, storage box, woven basket, bucket, fabric cube; basket, storage bin, box, storage basket, bins
Bread & Loaf Pans; kitchenware; loaf pan, bread pan, pullman pan, meatloaf pan; loaf pan, bread pan, baking pan, bread tin
Cabinet and Drawer Knobs; hardware; cabinet knob, drawer knob, mushroom knob, round knob, knob; knobs, cabinet knobs, drawer knobs, dresser knobs; count
Cabinet and Drawer Pulls; hardware; cabinet pull, drawer pull, bar pull, cup pull, handle, edge pull; handles, cabinet pulls, drawer handles, kitchen hardware; count
Candle Holders; decor; candle holder, candlestick, hurricane, candle lantern, votive holder, candelabra; candle holder, candlesticks, candle stand
Canisters & Jars; kitchenware; canister, jar, storage jar, cookie jar, canister set; canister, jar, kitchen canister, container
Carts & Stands; kitchenware; rolling cart, utility cart, serving cart, kitchen cart, microwave cart, bar cart; cart, rolling cart, kitchen cart, trolley, bar cart
Ceiling Fans; lighting; ceiling fan, fan with light, outdoor ceiling fan, low profile fan, bladeless fan, hugger fan; ceiling fan, fan, fan light, ceiling fan with light; fan
Chair Accessories; textile; chair cover, chair pad, chair glides, seat cover, chair slipcover; chair cover, chair cushion, chair pad, chair leg covers
Chairmats; office; chair mat, desk chair mat, floor protector, carpet protector mat; chair mat, office chair mat, floor mat for chair, desk mat
Chandeliers; lighting; chandelier, candle style chandelier, crystal chandelier, sputnik chandelier, wagon wheel chandelier, drum chandelier; chandelier, ceiling light, dining room light, hanging light; lights
Christmas Trees; seasonal; artificial christmas tree, pre-lit tree, flocked tree, holiday tree, fir tree, pine tree; christmas tree, xmas tree, holiday tree, fake christmas tree
Closet Organizer Accessories; storage; closet rod, valet rod, tie rack, belt rack, closet drawer insert, hanging organizer; closet organizer, closet accessories, tie rack
Coat Racks and Hooks; entry; coat rack, hall tree, wall hook rack, coat stand, hook rail; coat rack, coat hooks, hall tree, coat hanger
Coffee & Cocktail Tables; tables; coffee table, cocktail table, lift top coffee table, trunk, drum table, sled table; coffee table, center table, living room table
Computer Mounts; electronics; monitor arm, monitor mount, desk mount, keyboard tray, cpu holder; monitor stand, monitor arm, computer mount
Cooking Utensils; kitchenware; spatula, turner, ladle, utensil set, tongs, whisk, spoon; cooking utensils, spatula, kitchen utensils, utensil set
Cookware Sets; kitchenware; cookware set, pots and pans set, nonstick set, cookware collection; pots and pans, cookware, pan set, pots; pieces
Covers & Carry Bags; outdoor; grill cover, patio furniture cover, storage bag, carry bag, protective cover; cover, furniture cover, grill cover, outdoor cover
Crib Bedding Sets; kids; crib bedding set, crib set, nursery bedding, crib sheet set; crib bedding, baby bedding, nursery bedding
Crock Pots & Slow Cookers; appliance; slow cooker, crock pot, multi-cooker, programmable slow cooker; crockpot, slow cooker, crock pot; quarts
Curtain Hardware & Accessories; hardware; curtain rod, drapery rod, tieback, curtain rings, finial, double rod; curtain rod, drapery hardware, curtain rings, curtain tie backs; rod
Curtains & Drapes; textile; curtain panel, drape, blackout curtain, sheer panel, window treatment, valance; curtains, drapes, blackout curtains, window curtains; curtain
Daybeds & Guest Beds; beds; daybed, trundle bed, guest bed, folding bed, futon bed; daybed, guest bed, trundle, day bed
Deck Boxes; outdoor; deck box, storage bench, patio storage box, outdoor storage chest; deck box, outdoor storage, patio storage, pool storage
Decorative Objects; decor; figurine, sculpture, decorative bowl, bookends, tabletop accent, decorative box; decor, knick knacks, figurine, sculpture, table decor
Decorative Trays; decor; decorative tray, serving tray, ottoman tray, vanity tray, catchall; tray, decorative tray, coffee table tray
Desks; office; desk, writing desk, computer desk, standing desk, executive desk, secretary desk; desk, office desk, computer desk, work table, study table
Dining Bowls; tabletop; bowl, cereal bowl, soup bowl, pasta bowl, salad bowl; bowls, soup bowls, cereal bowls; set
Dining Chairs; dining; side chair, dining chair, arm chair, parsons chair, windsor chair, upholstered side chair; dining chairs, kitchen chairs, dining room chairs, chairs; set
Dining Linens; textile; tablecloth, table runner, placemat, cloth napkin, table linen; tablecloth, table runner, placemats, napkins; table
Dining Table Sets; dining; dining set, dinette set, table and chair set, counter height set, bistro set; dining set, kitchen table set, table and chairs, dinette, dining room set; seats
Dining Tables; dining; dining table, kitchen table, extendable table, trestle table, pedestal table, farmhouse table; dining table, kitchen table, dinner table, table; seats
Dog and Cat Bowls, Feeders & Accessories; pets; pet bowl, dog bowl, cat feeder, elevated feeder, automatic feeder, water fountain; dog bowl, cat bowl, pet feeder, pet bowl, dog dish
Door Knobs; hardware; door knob, passage knob, privacy knob, dummy knob, entry knob; door knob, doorknob, door handle
Door Levers; hardware; door lever, passage lever, privacy lever, lever handle, entry lever; door handle, lever, door lever
Door Mats; entry; doormat, welcome mat, entry mat, coir mat, boot tray; doormat, welcome mat, front door mat, outdoor mat
Dressers & Chests; bedroom; dresser, chest of drawers, double dresser, tallboy, lowboy, drawer chest; dresser, chest of drawers, drawers, bedroom dresser; drawers
Dryers; appliance; dryer, electric dryer, gas dryer, front load dryer, clothes dryer; dryer, clothes dryer, tumble dryer; cuft
End Tables; tables; end table, side table, accent table, c table, tray table, pedestal table; side table, end table, small table, night table
Espresso Machines; appliance; espresso machine, espresso maker, coffee machine, cappuccino maker, latte machine; espresso machine, coffee maker, espresso maker, coffee machine; none
Faux Florals; decor; artificial flowers, faux floral arrangement, silk flowers, floral arrangement, faux peony, faux orchid; fake flowers, artificial flowers, flower arrangement
Faux Plants and Trees; decor; artificial plant, faux tree, fake plant, faux fiddle leaf fig, artificial palm, faux succulent; fake plant, artificial plant, fake tree
Fencing & Accessories; outdoor; fence panel, garden fence, picket fence, privacy screen, garden gate; fence, fencing, garden fence, privacy fence
Flatware Serving Pieces; tabletop; serving spoon, cake server, serving fork, salad servers, serving set; serving utensils, serving spoons, salad servers
Floor & Wall Tile; building; porcelain tile, ceramic tile, mosaic tile, subway tile, peel and stick tile, floor tile; tile, floor tile, backsplash tile, wall tile, backsplash
Flush Mount Lighting; lighting; flush mount, semi flush mount, ceiling light, drum flush mount, close to ceiling light; ceiling light, flush mount light, ceiling lamp, hallway light; lights
Foam and Latex Mattresses; mattress; memory foam mattress, latex mattress, gel foam mattress, mattress in a box, foam mattress; mattress, memory foam mattress, foam mattress, bed mattress
Folding Tables; dining; folding table, card table, banquet table, portable table, fold-out table; folding table, card table, foldable table, fold up table; none
Food Storage & Dispensers; kitchenware; food storage container, cereal dispenser, container set, meal prep container, beverage dispenser; food containers, tupperware, food storage, storage containers
Fountains; outdoor; fountain, water fountain, tiered fountain, wall fountain, birdbath fountain, tabletop fountain; fountain, water feature, garden fountain
Free Weights; fitness; dumbbell, kettlebell, barbell, weight plate, dumbbell set; weights, dumbbells, kettlebell, hand weights; lbs
Furniture Covers; textile; slipcover, sofa cover, couch cover, chair slipcover, furniture protector; couch cover, sofa cover, slipcover, furniture protector
Furniture Cushions; textile; seat cushion, outdoor cushion, chair cushion, bench cushion, replacement cushion; cushions, patio cushions, seat cushion, chair pads
Garden Accents; outdoor; garden stake, wind spinner, gazing ball, garden sign, stepping stone, wind chime; garden decor, yard decor, lawn ornament, yard art
Garden Statues; outdoor; garden statue, gnome, statuary, animal statue, buddha statue; garden statue, yard statue, gnome, lawn statue
Glassware & Barware; tabletop; wine glass, tumbler, highball glass, stemless glass, coupe, rocks glass, decanter; glasses, drinking glasses, wine glasses, cups; set
Hampers & Baskets; storage; laundry hamper, hamper, laundry basket, clothes hamper, laundry sorter; hamper, laundry basket, clothes basket
Headboards; beds; headboard, upholstered headboard, panel headboard, wall mounted headboard, wingback headboard; headboard, bed headboard, head board
Indoor Chaise Lounges; seating; chaise lounge, chaise, fainting couch, lounge chair, recamier; chaise lounge, chaise, lounge chair, lounger
Innerspring Mattresses; mattress; innerspring mattress, hybrid mattress, pillow top mattress, coil mattress, spring mattress; mattress, spring mattress, hybrid mattress
Interior Doors; building; interior door, prehung door, slab door, french door, bifold door, pocket door; door, interior door, bedroom door, closet door
Jewelry Armoires; bedroom; jewelry armoire, jewelry cabinet, mirrored jewelry cabinet, jewelry chest, jewelry organizer; jewelry armoire, jewelry box, jewelry cabinet, jewelry storage; none
Kids Beds; kids; bunk bed, loft bed, toddler bed, kids bed, house bed, captain bed; bunk bed, kids bed, toddler bed, loft bed; bed
Kids Chairs; kids; kids chair, toddler chair, kids armchair, bean bag chair, kids rocking chair; kids chair, childrens chair, toddler chair
Kids Desks; kids; kids desk, children's desk, art desk, activity table, study desk; kids desk, childrens desk, desk for kids
Kids Wall Décor; kids; wall decal, nursery wall art, kids wall art, growth chart, wall sticker; nursery decor, kids wall art, wall decals
Kitchen Faucets; kitchen_fixture; kitchen faucet, pull down faucet, pull out faucet, bridge faucet, pot filler, touchless faucet; kitchen faucet, sink faucet, kitchen tap
Kitchen Islands; dining; kitchen island, kitchen cart, island, butcher block island, rolling island; kitchen island, island, kitchen cart, island table
Kitchen Mats; rugs; anti-fatigue mat, kitchen mat, kitchen rug, comfort mat, kitchen runner; kitchen rug, kitchen mat, anti fatigue mat
Kitchen Sinks; kitchen_fixture; kitchen sink, farmhouse sink, undermount sink, apron front sink, drop-in sink, workstation sink; kitchen sink, farmhouse sink, sink
Landscape Lighting; outdoor_lighting; path light, spotlight, well light, landscape light, solar path light, flood light; landscape lighting, path lights, outdoor lights, solar lights
Laundry Accessories & Storage; storage; drying rack, ironing board, laundry cart, laundry sorter, over the door hanger; drying rack, ironing board, laundry room storage
Lawn Games; outdoor_play; cornhole set, giant tumble tower, croquet set, bocce set, ring toss, ladder toss; yard games, cornhole, outdoor games
Lecterns & Podiums; office; lectern, podium, speaker stand, presentation stand; podium, lectern, speech stand
Licensed Products; kids; team logo sign, licensed wall decor, fan gear, team banner, character throw; sports decor, team sign, fan decor, character blanket
Light Bulbs; electronics; led bulb, light bulb, edison bulb, filament bulb, smart bulb, halogen bulb; light bulbs, bulbs, led bulbs; count
Lighting Accessories; lighting; light cord kit, ceiling medallion, canopy kit, lamp harp, chain extension; lighting parts, light kit, ceiling medallion; none
Lighting Shades; lighting; lamp shade, drum shade, empire shade, pendant shade, bell shade; lampshade, lamp shade, light shade; generic
Living Room Sets; seating; living room set, sofa set, sofa and loveseat set, configurable set; living room set, couch set, sofa set, living room furniture
Living Room Table Sets; tables; table set, coffee table set, nesting table set, 3 piece table set; coffee table set, living room tables, end table set
Log Storage; outdoor; log rack, firewood rack, log holder, log carrier, firewood storage; firewood rack, log holder, wood rack
Mailboxes; outdoor; mailbox, post mount mailbox, wall mount mailbox, locking mailbox, parcel box; mailbox, mail box, package box, parcel drop box
Makeup Vanities; bedroom; makeup vanity, vanity table, dressing table, vanity set, vanity desk; makeup vanity, vanity table, makeup table, vanity with mirror
Massage Chairs; seating; massage chair, zero gravity massage chair, shiatsu chair, massage recliner; massage chair, massage recliner, salon chair, spa chair
Mattress Covers and Protectors; bedding; mattress protector, mattress encasement, waterproof protector, mattress cover; mattress protector, mattress cover, waterproof mattress pad
Mattress Toppers and Pads; bedding; mattress topper, mattress pad, featherbed, foam topper, gel topper; mattress topper, mattress pad, bed topper
Memo Boards; office; bulletin board, cork board, whiteboard, chalkboard, memo board, pin board; bulletin board, cork board, whiteboard, chalkboard
Molding & Millwork; building; crown molding, baseboard, corbel, wainscoting, trim piece; molding, trim, crown molding
Nightstands; bedroom; nightstand, bedside table, night table, bedside cabinet, floating nightstand; nightstand, night stand, bedside table
Office Chairs; office; office chair, task chair, desk chair, executive chair, ergonomic chair, gaming chair; office chair, desk chair, computer chair, gaming chair
Office Storage Cabinets; office; file cabinet, filing cabinet, storage cabinet, lateral file, mobile pedestal; file cabinet, filing cabinet, office cabinet
Ottomans; seating; ottoman, pouf, storage ottoman, footstool, cocktail ottoman, cube ottoman; ottoman, footrest, pouf, foot stool
Outdoor Conversation Sets; outdoor_furniture; conversation set, seating group, sectional seating group, chat set; patio furniture set, outdoor furniture, patio set, outdoor sectional
Outdoor Fireplaces; outdoor; fire pit, fire table, chiminea, outdoor fireplace, propane fire pit; fire pit, firepit, outdoor fire pit, gas fire pit
Outdoor Lanterns & Lamps; outdoor_lighting; lantern, solar lantern, outdoor lamp, post light, outdoor floor lamp; outdoor lantern, lantern, outdoor lamp
Outdoor Wall Decor; outdoor; metal wall art, outdoor wall art, outdoor clock, wall planter, sun face wall decor; outdoor wall art, patio wall decor, fence decor
Outdoor Wall Lights; outdoor_lighting; outdoor wall lantern, wall light, outdoor sconce, porch light, barn light; porch light, outdoor light, exterior light, outdoor wall light
Pantry Cabinets; storage; pantry cabinet, kitchen pantry, larder cabinet, food pantry, storage pantry; pantry, pantry cabinet, kitchen cabinet
Patio Bar Sets; outdoor_furniture; bar set, bistro set, pub set, outdoor bar set, counter height set; patio bar set, outdoor bar, bistro set
Patio Bar Stools; outdoor_furniture; outdoor bar stool, patio stool, counter stool, bar stool; outdoor bar stools, patio bar stool
Patio Chaise Lounges; outdoor_furniture; chaise lounge, sun lounger, reclining chaise, lounger, pool lounger; pool lounge chair, outdoor chaise, sun lounger
Patio Dining Sets; outdoor_furniture; dining set, patio dining set, outdoor dining set, bistro dining set; patio table and chairs, outdoor dining set, patio dining set; seats
Patio Lounge Chairs; outdoor_furniture; lounge chair, adirondack chair, patio chair, club chair, egg chair, deep seating chair; outdoor chair, patio chair, adirondack chair
Patio Rockers & Gliders; outdoor_furniture; rocking chair, glider, porch rocker, patio rocker, glider bench; rocking chair, porch rocker, glider
Patio Sofas; outdoor_furniture; outdoor sofa, patio sofa, loveseat, outdoor sectional, outdoor daybed; outdoor couch, patio couch, outdoor sofa
Patio Umbrella Stands & Bases; outdoor_furniture; umbrella base, umbrella stand, weighted base, cantilever base; umbrella stand, umbrella base, umbrella holder
Pendant Lights; lighting; pendant, pendant light, mini pendant, globe pendant, drum pendant, cluster pendant; hanging light, pendant light, kitchen island light; lights
Pergolas; outdoor; pergola, gazebo, arbor, pergola kit, louvered pergola; pergola, gazebo, outdoor canopy
Pet Gates; pets; pet gate, dog gate, freestanding gate, pressure mounted gate, pet playpen; dog gate, pet gate, baby gate
Picnic Baskets & Coolers; outdoor; picnic basket, cooler, ice chest, cooler cart, picnic backpack; cooler, picnic basket, ice chest
Picture Frames; decor; picture frame, photo frame, collage frame, gallery frame, frame set; picture frames, photo frames, frames
Plant & Telephone Tables; tables; plant stand, pedestal, telephone table, plant table, flower stand; plant stand, plant holder, plant table
Planters; outdoor; planter, plant pot, window box, raised bed, hanging planter, urn planter; planter, flower pot, plant pot, pots
Plates & Saucers; tabletop; dinner plate, salad plate, plate, saucer, dessert plate, charger plate; plates, dinner plates, dishes; set
Playhouses & Play Tents; outdoor_play; playhouse, play tent, teepee, cottage playhouse, play house; playhouse, kids tent, play tent, teepee
Projector Screens; electronics; projector screen, projection screen, motorized screen, pull down screen; projector screen, movie screen
Range Hoods; kitchen_fixture; range hood, vent hood, wall mount hood, under cabinet hood, island hood; range hood, vent hood, stove hood, exhaust fan
Recliners; seating; recliner, power recliner, rocker recliner, wall hugger recliner, lift chair, reclining chair; recliner, reclining chair, lazy boy, lift chair
Refrigerators; appliance; refrigerator, french door refrigerator, side-by-side refrigerator, mini fridge, wine fridge, beverage refrigerator; fridge, refrigerator, mini fridge; cuft
Ride-On Toys; outdoor_play; ride-on car, ride on toy, balance bike, tricycle, scooter, electric ride-on; ride on car, kids car, power wheels
Saunas; fitness; sauna, infrared sauna, barrel sauna, indoor sauna, steam sauna; sauna, home sauna, infrared sauna; person
Sectionals; seating; sectional, sectional sofa, l-shaped sectional, modular sectional, reversible sectional, u-shaped sectional; sectional, sectional couch, l shaped couch, corner sofa; sofa_width
Serving Dishes & Platters; tabletop; platter, serving bowl, serving dish, serving platter, charcuterie board; platter, serving dish, serving platter
Sheets And Sheet Sets; bedding; sheet set, fitted sheet, flat sheet, percale sheet set, sateen sheet set; sheets, bed sheets, sheet set
Shelving & Racks; storage; shelving unit, storage rack, wire shelving, etagere, utility shelf, garage shelving; shelves, shelving unit, storage rack
Shoe Storage; entry; shoe rack, shoe cabinet, shoe organizer, shoe bench, shoe storage tower; shoe rack, shoe organizer, shoe cabinet
Shower & Tub Accessories; bath; shower caddy, shower shelf, bath tray, grab bar, shower seat, shower squeegee; shower caddy, shower organizer, bathtub tray
Shower & Tub Doors; bath_fixture; shower door, frameless shower door, sliding shower door, tub door, bypass door; shower door, glass shower door, tub door
Shower Curtain Hooks and Accessories; bath; shower curtain hooks, shower rod, curved shower rod, shower rings, shower curtain rings; shower hooks, shower rod, curtain rings
Shower Curtains; bath_textile; shower curtain, shower curtain liner, fabric shower curtain, shower curtain set; shower curtain, bathroom curtain
Shower Faucets & Systems; bath_fixture; shower system, shower faucet, tub and shower faucet, shower trim kit, thermostatic valve; shower faucet, shower set, shower system
Shower Heads; bath_fixture; shower head, rain shower head, handheld shower, dual shower head, showerhead; shower head, rain shower, handheld shower
Sideboards & Buffets; dining; sideboard, buffet, credenza, server, buffet table, china cabinet; sideboard, buffet, buffet cabinet, credenza
Smoke & CO Detectors; electronics; smoke detector, carbon monoxide alarm, smoke alarm, co detector, combination alarm; smoke detector, smoke alarm, co detector; none
Sofa & Console Tables; tables; console table, sofa table, entryway table, hall table, narrow table; console table, sofa table, entry table, hallway table
Sofas; seating; sofa, loveseat, settee, chesterfield, sleeper sofa, futon, love seat; couch, sofa, loveseat, sofa couch; sofa_width
Specialty Serving; tabletop; cake stand, chip and dip, tiered server, gravy boat, deviled egg plate, butter dish; cake stand, serving set, tiered tray
Storage Drawers; storage; storage drawers, drawer unit, rolling drawer cart, plastic drawers, drawer chest; storage drawers, plastic drawers, drawer organizer
Strainers, Colanders, & Salad Spinners; kitchenware; colander, strainer, salad spinner, sieve, mesh strainer; colander, strainer, salad spinner
String Lights; outdoor_lighting; fairy lights, bistro lights, globe string lights, patio lights, led string, rope light; string lights, fairy lights, patio lights
Swing Set Accessories; outdoor_play; swing seat, tire swing, swing chains, slide, trapeze bar, saucer swing; swing, swing seat, tree swing
TV Stands & Entertainment Centers; tables; tv stand, media console, entertainment center, media cabinet, tv console, fireplace tv stand; tv stand, tv console, entertainment center, media stand; tv
Table Lamps; lighting; table lamp, desk lamp, buffet lamp, bedside lamp, accent lamp, lamp set; lamp, table lamp, bedside lamp, desk lamp; lamp
Toilet Paper Holders; bath; toilet paper holder, tissue holder, toilet roll holder, freestanding paper holder; toilet paper holder, tp holder, toilet roll stand
Towel & Robe Hooks; bath; robe hook, towel hook, double hook, hook rail, towel ring; towel hook, robe hook, bathroom hooks
Trash Cans & Recycling; kitchenware; trash can, waste basket, step can, recycling bin, garbage can, touchless can; trash can, garbage can, waste bin, wastebasket; gallons
Tubs And Whirlpools; bath_fixture; bathtub, soaking tub, freestanding tub, clawfoot tub, whirlpool tub, alcove tub; bathtub, tub, soaking tub, freestanding bathtub
Under Cabinet Lighting; lighting; under cabinet light, puck light, light bar, led strip, tape light; under cabinet lights, puck lights, led strip lights; count
Uniters Outdoor Furniture; outdoor_furniture; outdoor furniture set, patio furniture piece, outdoor seating, patio set; patio furniture, outdoor furniture
Vanities; vanity; bathroom vanity, single vanity, double vanity, vanity set, washstand, sink vanity, vanity cabinet with top; bathroom vanity, vanity, bathroom sink cabinet, sink vanity
Vanity Bases; vanity; vanity base, vanity cabinet, base cabinet, vanity base only; vanity cabinet, vanity base, bathroom cabinet
Vanity Lighting; lighting; vanity light, bath bar, bathroom light, vanity fixture, wall bar light; vanity light, bathroom light, bath light, mirror light; lights
Vases, Urns, Jars, & Bottles; decor; vase, urn, decorative jar, bottle, bud vase, floor vase, jug; vase, flower vase, floor vase
Wall & Accent Mirrors; wall_decor; wall mirror, accent mirror, floor mirror, round mirror, full length mirror, sunburst mirror, leaner mirror; mirror, wall mirror, full length mirror, round mirror
Wall Art; wall_decor; canvas print, framed print, painting, art print, poster, canvas art, graphic art; wall art, canvas, painting, picture, artwork
Wall Clocks; wall_decor; wall clock, clock, oversized clock, farmhouse clock, atomic clock; wall clock, clock, big clock; generic
Wall Décor; wall_decor; metal wall decor, wall sculpture, wall accent, tapestry, wall hanging, macrame; wall decor, wall hanging, wall decoration
Wall Mounted Shelves; wall_decor; floating shelf, wall shelf, ledge shelf, corner shelf, picture ledge; floating shelves, wall shelf, shelf; generic
Wall Plates; hardware; switch plate, outlet cover, wall plate, toggle plate, decorator plate; light switch cover, outlet cover, wall plate; gang
Wall Sconces; lighting; wall sconce, sconce, swing arm lamp, wall light, plug-in sconce, armed sconce; wall light, sconce, wall lamp, wall sconce; lights
Wallpaper; building; wallpaper, peel and stick wallpaper, wall mural, grasscloth, removable wallpaper, wall covering; wallpaper, peel and stick wallpaper, wall paper
Washing Machines; appliance; washer, washing machine, front load washer, top load washer, laundry center, portable washer; washer, washing machine, laundry machine; cuft
Weather Instruments; outdoor; weather station, rain gauge, thermometer, barometer, weathervane; weather station, thermometer, rain gauge, weather vane
Wreaths; seasonal; wreath, door wreath, garland, eucalyptus wreath, christmas wreath; wreath, door wreath, front door wreath"""

_UPHOLSTERY_COLOURS = (
    "Gray", "Beige", "Cream", "Navy", "Blue", "Green", "Charcoal", "Brown", "Ivory", "Pink",
    "Mustard", "Teal", "Black", "White", "Rust", "Emerald",
)  # fmt: skip
_WOOD_COLOURS = (
    "Natural", "Walnut", "Espresso", "White", "Black", "Gray", "Oak", "Cherry", "Brown",
    "Honey", "Driftwood",
)  # fmt: skip
_FINISH_COLOURS = (
    "Matte Black", "Brushed Nickel", "Chrome", "Polished Brass", "Oil Rubbed Bronze",
    "Brushed Gold", "Satin Nickel", "White",
)  # fmt: skip
_DECOR_COLOURS = (
    "White", "Black", "Gold", "Silver", "Blue", "Green", "Gray", "Beige", "Red", "Pink",
    "Multi-Color", "Clear", "Brown",
)  # fmt: skip
_TEXTILE_COLOURS = (
    "White", "Gray", "Blue", "Navy", "Beige", "Sage", "Blush", "Charcoal", "Ivory", "Green",
    "Yellow", "Multi-Color", "Black", "Terracotta",
)  # fmt: skip
_APPLIANCE_COLOURS = ("Stainless Steel", "Black", "White", "Black Stainless", "Slate", "Red")
STYLES = (
    "Modern", "Mid-Century Modern", "Farmhouse", "Traditional", "Industrial", "Coastal",
    "Glam", "Bohemian", "Scandinavian", "Rustic", "Contemporary", "Transitional",
)  # fmt: skip

# Size vocabularies, referenced by families and by the class table's fifth column.
_SIZE_SETS: dict[str, tuple[str, ...]] = {
    "generic": ("Small", "Medium", "Large", "Oversized"),
    "bed": ("Twin", "Full", "Queen", "King", "California King"),
    "rug": ("2' x 3'", "4' x 6'", "5' x 8'", "8' x 10'", "9' x 12'", "6' Round"),
    "seats": ("Seats 2", "Seats 4", "Seats 6", "Seats 8"),
    "sofa_width": ("62''", "72''", "84''", "90''", "96''", "108''"),
    "vanity": ("24''", "30''", "36''", "48''", "60''", "72''"),
    "height": ("Counter Height", "Bar Height", "Extra Tall"),
    "pillow": ("18'' x 18''", "20'' x 20''", "22'' x 22''", "12'' x 20''", "14'' x 36''"),
    "curtain": ("63'' L", "84'' L", "96'' L", "108'' L"),
    "set": ("Set of 2", "Set of 4", "Set of 6", "Set of 8", "Set of 12"),
    "count": ("Single", "Pack of 5", "Pack of 10", "Pack of 25"),
    "lights": ("1-Light", "3-Light", "4-Light", "5-Light", "6-Light", "8-Light"),
    "lamp": ("15''", "20''", "24''", "28''", "32''"),
    "fan": ("42''", "44''", "52''", "60''", "72''"),
    "tv": ("Up to 50''", "Up to 55''", "Up to 65''", "Up to 75''", "Up to 85''"),
    "art": ("12'' x 16''", "18'' x 24''", "24'' x 36''", "30'' x 40''", "40'' x 60''"),
    "cuft": ("3.5 cu. ft.", "4.5 cu. ft.", "5.2 cu. ft.", "7.4 cu. ft.", "20 cu. ft."),
    "quarts": ("2 Qt.", "4 Qt.", "6 Qt.", "8 Qt."),
    "pieces": ("3 Piece", "5 Piece", "8 Piece", "10 Piece", "12 Piece"),
    "drawers": ("3 Drawer", "4 Drawer", "6 Drawer", "8 Drawer", "9 Drawer"),
    "gallons": ("4 Gallon", "8 Gallon", "13 Gallon", "16 Gallon", "20 Gallon"),
    "lbs": ("5 lb", "10 lb", "15 lb", "25 lb", "50 lb"),
    "person": ("1-Person", "2-Person", "4-Person", "6-Person"),
    "gang": ("1-Gang", "2-Gang", "3-Gang", "4-Gang"),
    "rod": ("28''-48''", "48''-84''", "66''-120''", "120''-170''"),
    "table": ("60'' x 84''", "60'' x 102''", "60'' x 120''", "13'' x 72''", "13'' x 90''"),
}


@dataclass(frozen=True, slots=True)
class _Family:
    """What products of a family of classes look like and cost."""

    path: str
    colours: tuple[str, ...]
    materials: tuple[str, ...]
    size_set: str | None
    price_median: float
    adjectives: tuple[str, ...]
    suffixes: tuple[str, ...]
    rooms: tuple[str, ...]


def _split(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _family(
    path: str,
    colours: tuple[str, ...],
    materials: str,
    size_set: str | None,
    price: float,
    adjectives: str,
    suffixes: str,
    rooms: str,
) -> _Family:
    return _Family(
        path, colours, _split(materials), size_set, price, _split(adjectives), _split(suffixes),
        _split(rooms),
    )  # fmt: skip


# fmt: off
_FAMILIES: dict[str, _Family] = {
    "seating": _family(
        "Furniture / Living Room Furniture", _UPHOLSTERY_COLOURS,
        "Velvet, Linen, Genuine Leather, Faux Leather, Polyester, Boucle, Microfiber, Chenille",
        "generic", 520.0, "Upholstered, Tufted, Rolled Arm, Channel Tufted, Swivel, Armless, "
        "Square Arm, Down Filled, Performance Fabric",
        "with Cushions, with Pillows, with Storage, with Ottoman, Set of 2",
        "living room, family room, den, reading nook",
    ),
    "tables": _family(
        "Furniture / Living Room Furniture", _WOOD_COLOURS,
        "Solid Wood, Manufactured Wood, Metal, Glass, Marble, Reclaimed Wood, Acacia, Rattan",
        "generic", 230.0, "Round, Rectangular, Lift Top, Nesting, Pedestal, Trestle, Oval",
        "with Storage, with Drawer, with Shelf, with Casters, Set of 2",
        "living room, entryway, family room",
    ),
    "dining": _family(
        "Furniture / Kitchen & Dining Furniture", _WOOD_COLOURS,
        "Solid Wood, Manufactured Wood, Metal, Rubberwood, Acacia, Faux Leather, Linen, Rattan",
        "seats", 330.0, "Extendable, Upholstered, Counter Height, Round, Farmhouse Style, Swivel",
        "with Leaf, with Storage, Set of 2, Set of 4, with Cushion",
        "dining room, kitchen, breakfast nook",
    ),
    "bedroom": _family(
        "Furniture / Bedroom Furniture", _WOOD_COLOURS,
        "Solid Wood, Manufactured Wood, Pine, Mango Wood, Metal, Engineered Wood",
        "drawers", 360.0, "Double, Tall, Mirrored, Lighted, Soft Close, Tapered Leg",
        "with Mirror, with Drawers, with Charging Station, with LED Lights",
        "bedroom, guest room, closet",
    ),
    "beds": _family(
        "Furniture / Bedroom Furniture / Beds & Headboards", _UPHOLSTERY_COLOURS,
        "Solid Wood, Metal, Velvet, Linen, Faux Leather, Manufactured Wood, Iron",
        "bed", 480.0, "Upholstered, Tufted, Low Profile, Wingback, Canopy, Storage",
        "with Storage, with Drawers, with Headboard, with USB Ports, with Trundle",
        "bedroom, guest room, master bedroom",
    ),
    "mattress": _family(
        "Mattresses & Foundations", ("White", "Gray", "Blue"),
        "Memory Foam, Gel Memory Foam, Latex, Pocketed Coils, Hybrid Foam",
        "bed", 520.0, "Medium Firm, Plush, Firm, Cooling, Pillow Top",
        "in a Box, with CertiPUR-US Foam, with Cooling Cover",
        "bedroom, guest room, kids room",
    ),
    "bedding": _family(
        "Bed & Bath / Bedding", _TEXTILE_COLOURS,
        "Cotton, Linen, Microfiber, Bamboo, Flannel, Percale, Sateen, Polyester",
        "bed", 85.0, "Reversible, Quilted, Cooling, Deep Pocket, Organic, Breathable",
        "with Shams, Set of 2, with Pillowcases",
        "bedroom, guest room, dorm",
    ),
    "storage": _family(
        "Storage & Organization", _WOOD_COLOURS,
        "Manufactured Wood, Solid Wood, Metal, Wicker, Seagrass, Plastic, Fabric, Bamboo",
        "generic", 120.0, "Stackable, Collapsible, Wall Mounted, Rolling, Adjustable, Open",
        "with Lid, with Doors, with Wheels, with Handles, Set of 3",
        "closet, garage, laundry room, bedroom, kitchen",
    ),
    "bath_storage": _family(
        "Bed & Bath / Bathroom Storage", _WOOD_COLOURS,
        "Manufactured Wood, Solid Wood, Bamboo, Metal, MDF",
        "generic", 140.0, "Freestanding, Wall Mounted, Recessed, Mirrored, Slim",
        "with Doors, with Shelves, with Mirror",
        "bathroom, powder room",
    ),
    "entry": _family(
        "Furniture / Entryway Furniture", _WOOD_COLOURS,
        "Solid Wood, Metal, Bamboo, Coir, Rubber, Manufactured Wood",
        "generic", 75.0, "Freestanding, Wall Mounted, Non-Slip, Weatherproof, Tiered",
        "with Hooks, with Bench, with Shelf, Set of 2",
        "entryway, mudroom, front porch, hallway",
    ),
    "office": _family(
        "Furniture / Office Furniture", ("Black", "White", "Gray", "Walnut", "Oak", "Espresso"),
        "Mesh, Faux Leather, Manufactured Wood, Solid Wood, Metal, Vinyl, Cork",
        "generic", 210.0, "Ergonomic, Height Adjustable, Lockable, L-Shaped, Mobile",
        "with Lumbar Support, with Drawers, with Keyboard Tray, with Wheels",
        "home office, study, workspace",
    ),
    "kids": _family(
        "Baby & Kids", ("White", "Pink", "Blue", "Gray", "Natural", "Multi-Color", "Green"),
        "Solid Wood, Manufactured Wood, Cotton, Polyester, Vinyl, Pine",
        "generic", 160.0, "Kids, Toddler, Convertible, Playful, Whimsical",
        "with Storage, with Trundle, with Slide, with Chair",
        "kids room, nursery, playroom",
    ),
    "outdoor_furniture": _family(
        "Outdoor / Patio Furniture", ("Brown", "Gray", "Black", "Natural", "White", "Teak"),
        "Wicker, Teak, Aluminum, Resin, Acacia, Steel, Eucalyptus, Rope",
        "seats", 420.0, "Weather Resistant, Outdoor, Folding, Stackable, Reclining",
        "with Cushions, with Umbrella Hole, Set of 2, with Fire Pit",
        "patio, deck, backyard, poolside",
    ),
    "outdoor": _family(
        "Outdoor / Outdoor Decor & Structures", ("Bronze", "Black", "Gray", "Green", "Brown"),
        "Resin, Metal, Cast Iron, Steel, Stone, Concrete, Cedar, Polyethylene",
        "generic", 140.0, "Weather Resistant, Solar, Outdoor, Rustproof, Handcrafted",
        "with Lid, with Lock, with Stand, Set of 2",
        "garden, yard, patio, porch",
    ),
    "outdoor_play": _family(
        "Baby & Kids / Outdoor Play", ("Multi-Color", "Red", "Blue", "Pink", "Green", "Natural"),
        "Solid Wood, Plastic, Cedar, Polyester, Steel",
        "generic", 180.0, "Kids, Outdoor, Portable, Foldable, Battery Powered",
        "with Carry Bag, with Remote Control, with Flag",
        "backyard, playroom, lawn",
    ),
    "lighting": _family(
        "Lighting / Indoor Lighting", _FINISH_COLOURS,
        "Metal, Glass, Crystal, Brass, Rattan, Fabric, Iron, Wood",
        "lights", 190.0, "Dimmable, LED, Drum, Globe, Geometric, Shaded, Sputnik, Linear",
        "with Shade, with Remote, with Crystal Accents, Set of 2",
        "dining room, kitchen, foyer, living room, bedroom",
    ),
    "outdoor_lighting": _family(
        "Lighting / Outdoor Lighting", ("Black", "Bronze", "Silver", "White", "Warm White"),
        "Aluminum, Glass, Steel, Plastic, Copper",
        "count", 70.0, "Solar, Dusk to Dawn, Motion Sensor, Waterproof, LED",
        "with Timer, Pack of 4, with Remote",
        "porch, patio, garden path, deck",
    ),
    "rugs": _family(
        "Rugs", _TEXTILE_COLOURS,
        "Wool, Jute, Polypropylene, Cotton, Polyester, Sisal, Viscose",
        "rug", 160.0, "Oriental, Geometric, Abstract, Distressed, Washable, Shag, Hand Woven",
        "Indoor/Outdoor, Machine Washable",
        "living room, bedroom, hallway, kitchen",
    ),
    "bath_textile": _family(
        "Bed & Bath / Bath Linens", _TEXTILE_COLOURS,
        "Cotton, Microfiber, Memory Foam, Bamboo, Chenille, Polyester",
        "generic", 30.0, "Non-Slip, Absorbent, Quick Dry, Waffle Weave, Plush",
        "with Hooks, Set of 2, with Liner",
        "bathroom, guest bath",
    ),
    "bath": _family(
        "Bed & Bath / Bathroom Accessories", _FINISH_COLOURS,
        "Stainless Steel, Ceramic, Resin, Glass, Brass, Zinc",
        None, 35.0, "Wall Mounted, Freestanding, Rustproof, Adhesive",
        "Set of 2, with Shelf, with Hooks",
        "bathroom, powder room",
    ),
    "bath_fixture": _family(
        "Home Improvement / Bathroom Fixtures", _FINISH_COLOURS,
        "Brass, Stainless Steel, Zinc, Glass, Acrylic, Cast Iron",
        None, 260.0, "Widespread, Thermostatic, High Pressure, Frameless, Freestanding",
        "with Drain Assembly, with Valve, with Handheld",
        "bathroom, master bath",
    ),
    "vanity": _family(
        "Home Improvement / Bathroom Vanities", _WOOD_COLOURS,
        "Solid Wood, MDF, Plywood, Marble Top, Quartz Top, Ceramic Top",
        "vanity", 640.0, "Single, Double, Freestanding, Floating, Wall Mounted",
        "with Top, with Mirror, with Ceramic Sink, Base Only",
        "bathroom, master bath, powder room",
    ),
    "hardware": _family(
        "Home Improvement / Hardware", _FINISH_COLOURS,
        "Zinc, Brass, Stainless Steel, Iron, Aluminum, Ceramic",
        "count", 20.0, "Solid, Modern, Classic, Heavy Duty, Knurled",
        "with Screws, Pack of 10, Multipack",
        "kitchen, bathroom, bedroom",
    ),
    "building": _family(
        "Home Improvement / Building Materials", _DECOR_COLOURS,
        "Porcelain, Ceramic, Glass, Polyurethane, Vinyl, Solid Wood, Paper",
        "generic", 90.0, "Peel and Stick, Matte, Glossy, Textured, Unfinished, Primed",
        "per Sq. Ft., per Roll, per Piece",
        "kitchen, bathroom, living room, hallway",
    ),
    "kitchen_fixture": _family(
        "Home Improvement / Kitchen", _FINISH_COLOURS,
        "Stainless Steel, Brass, Fireclay, Granite Composite, Copper, Cast Iron",
        None, 330.0, "Pull Down, Touchless, Undermount, Ducted, Commercial Style",
        "with Sprayer, with Soap Dispenser, with Grid",
        "kitchen",
    ),
    "appliance": _family(
        "Appliances", _APPLIANCE_COLOURS,
        "Stainless Steel, Plastic, Aluminum, Enamel",
        "cuft", 680.0, "Energy Star, Smart, High Efficiency, Compact, Programmable",
        "with Steam, with Ice Maker, with Milk Frother",
        "kitchen, laundry room",
    ),
    "kitchenware": _family(
        "Kitchen & Tabletop / Kitchen Essentials", _DECOR_COLOURS,
        "Stainless Steel, Cast Iron, Nonstick, Ceramic, Silicone, Glass, Bamboo, Plastic",
        None, 40.0, "Nonstick, Dishwasher Safe, Heat Resistant, Airtight, Stackable",
        "with Lid, with Handles, Set of 3, Set of 2",
        "kitchen, pantry",
    ),
    "tabletop": _family(
        "Kitchen & Tabletop / Tabletop", _DECOR_COLOURS,
        "Stoneware, Porcelain, Glass, Ceramic, Melamine, Bamboo, Crystal, Stainless Steel",
        "set", 45.0, "Handmade, Dishwasher Safe, Microwave Safe, Reactive Glaze, Gold Rimmed",
        "Service for 4, with Gift Box",
        "dining room, kitchen, bar",
    ),
    "decor": _family(
        "Decor & Pillows / Decorative Accents", _DECOR_COLOURS,
        "Ceramic, Glass, Metal, Wood, Resin, Polyester, Silk, Plastic",
        "generic", 45.0, "Handcrafted, Decorative, Tabletop, Potted, Artificial",
        "Set of 2, Set of 3, with Pot",
        "living room, mantel, entryway, bedroom",
    ),
    "wall_decor": _family(
        "Decor & Pillows / Wall Decor", _DECOR_COLOURS,
        "Canvas, Paper, Metal, Wood, Glass, Resin, MDF",
        "art", 95.0, "Framed, Oversized, Beveled, Gallery Wrapped, Floating",
        "Set of 3, Set of 2, on Canvas, with Frame",
        "living room, bedroom, hallway, office",
    ),
    "textile": _family(
        "Decor & Pillows / Pillows & Textiles", _TEXTILE_COLOURS,
        "Cotton, Linen, Polyester, Velvet, Faux Fur, Outdoor Fabric, Wool",
        "pillow", 35.0, "Blackout, Reversible, Embroidered, Tasseled, Textured, Outdoor",
        "Set of 2, with Insert, Single Panel, with Ties",
        "living room, bedroom, patio",
    ),
    "seasonal": _family(
        "Holiday Decor", ("Green", "White", "Flocked White", "Gold", "Red"),
        "PVC, PE, Eucalyptus, Pine, Berries, Metal",
        "generic", 110.0, "Pre-Lit, Flocked, Artificial, Hinged, Slim",
        "with Lights, with Stand, with Pinecones",
        "entryway, front door, living room",
    ),
    "pets": _family(
        "Pet", ("Black", "White", "Gray", "Natural", "Blue", "Silver"),
        "Stainless Steel, Ceramic, Wood, Plastic, Metal",
        "generic", 55.0, "Elevated, Non-Slip, Automatic, Adjustable, Freestanding",
        "with Stand, with Door, Set of 2",
        "kitchen, living room, hallway",
    ),
    "fitness": _family(
        "Sports & Fitness", ("Black", "Gray", "Natural", "Red", "Blue"),
        "Steel, Cast Iron, Hemlock, Cedar, Rubber, Neoprene",
        "generic", 140.0, "Adjustable, Wall Mounted, Hex, Freestanding, Far Infrared",
        "with Rack, with Hooks, Pair",
        "garage, home gym, basement",
    ),
    "electronics": _family(
        "Home Improvement / Electrical & Tech", ("Black", "White", "Silver", "Gray"),
        "Aluminum, Steel, Plastic, Glass, Fabric",
        "generic", 60.0, "Smart, Dimmable, Hardwired, Battery Operated, Motorized",
        "with Remote, Pack of 4, with Voice Alerts",
        "home office, living room, home theater",
    ),
}
# fmt: on


# Closely related product types: a product of a related class is a Partial match.
_RELATED_GROUPS: tuple[tuple[str, ...], ...] = (
    ("Sofas", "Sectionals", "Living Room Sets", "Patio Sofas", "Daybeds & Guest Beds"),
    ("Sofas", "Indoor Chaise Lounges"),
    ("Accent Chairs", "Recliners", "Massage Chairs", "Indoor Chaise Lounges", "Kids Chairs",
     "Office Chairs", "Dining Chairs", "Patio Lounge Chairs"),
    ("Bar Stools", "Patio Bar Stools", "Accent Stools"),
    ("Accent Stools", "Ottomans", "Benches"),
    ("Coffee & Cocktail Tables", "End Tables", "Sofa & Console Tables", "Living Room Table Sets",
     "Plant & Telephone Tables"),
    ("Dining Tables", "Dining Table Sets", "Folding Tables", "Kitchen Islands",
     "Patio Dining Sets"),
    ("Beds", "Bed Frames", "Kids Beds", "Daybeds & Guest Beds", "Adjustable Beds", "Headboards"),
    ("Foam and Latex Mattresses", "Innerspring Mattresses", "Mattress Toppers and Pads",
     "Mattress Covers and Protectors"),
    ("Bedding Sets", "Sheets And Sheet Sets", "Crib Bedding Sets", "Bed Accessories"),
    ("Vanities", "Vanity Bases"),
    ("Makeup Vanities", "Vanities", "Desks", "Kids Desks"),
    ("Chandeliers", "Pendant Lights", "Flush Mount Lighting", "Ceiling Fans"),
    ("Wall Sconces", "Vanity Lighting", "Outdoor Wall Lights"),
    ("Outdoor Lanterns & Lamps", "Landscape Lighting", "String Lights", "Outdoor Wall Lights"),
    ("Table Lamps", "Lighting Shades", "Light Bulbs", "Lighting Accessories"),
    ("Area Rugs", "Bath Rugs & Mats", "Kitchen Mats", "Door Mats"),
    ("Wall Art", "Wall Décor", "Kids Wall Décor", "Outdoor Wall Decor", "Wall Clocks",
     "Wall & Accent Mirrors"),
    ("Decorative Objects", "Vases, Urns, Jars, & Bottles", "Candle Holders", "Decorative Trays",
     "Picture Frames", "Faux Florals", "Faux Plants and Trees"),
    ("Bathroom Sink Faucets", "Kitchen Faucets", "Shower Faucets & Systems", "Shower Heads"),
    ("Cabinet and Drawer Knobs", "Cabinet and Drawer Pulls", "Door Knobs", "Door Levers"),
    ("Bookcases", "Shelving & Racks", "Wall Mounted Shelves", "Storage Drawers"),
    ("Dressers & Chests", "Nightstands", "Armoires & Wardrobes", "Accent Chests / Cabinets",
     "Jewelry Armoires"),
    ("Sideboards & Buffets", "Accent Chests / Cabinets", "Bars & Bar Sets", "Pantry Cabinets",
     "TV Stands & Entertainment Centers"),
    ("Outdoor Conversation Sets", "Patio Dining Sets", "Patio Bar Sets",
     "Uniters Outdoor Furniture", "Patio Sofas", "Patio Lounge Chairs", "Patio Chaise Lounges",
     "Patio Rockers & Gliders"),
    ("Patio Chaise Lounges", "Indoor Chaise Lounges"),
    ("Patio Bar Sets", "Bars & Bar Sets", "Dining Table Sets"),
    ("Dining Bowls", "Plates & Saucers", "Serving Dishes & Platters", "Specialty Serving",
     "Flatware Serving Pieces"),
    ("Washing Machines", "Dryers"),
    ("Curtains & Drapes", "Curtain Hardware & Accessories"),
    ("Shower Curtains", "Shower Curtain Hooks and Accessories", "Shower & Tub Accessories",
     "Bath Accessories"),
    ("Garden Statues", "Garden Accents", "Fountains", "Planters"),
    ("Hampers & Baskets", "Boxes, Bins, Baskets, & Buckets", "Laundry Accessories & Storage"),
    ("Furniture Cushions", "Accent Pillows", "Chair Accessories", "Furniture Covers"),
    ("Christmas Trees", "Wreaths", "Faux Plants and Trees"),
    ("Coat Racks and Hooks", "Towel & Robe Hooks", "Shoe Storage", "Benches"),
    ("Office Storage Cabinets", "Storage Drawers", "Accent Chests / Cabinets"),
    ("Carts & Stands", "Kitchen Islands"),
)  # fmt: skip

# How shoppers write attribute values: each canonical value -> the words they type.
QUERY_FORMS: dict[str, tuple[str, ...]] = {
    "Gray": ("grey", "gray", "light grey"),
    "Charcoal": ("charcoal", "dark grey", "dark gray"),
    "Navy": ("navy", "navy blue", "dark blue"),
    "Ivory": ("ivory", "off white", "cream"),
    "Cream": ("cream", "off white"),
    "Beige": ("beige", "tan", "neutral"),
    "Multi-Color": ("colorful", "multicolor"),
    "Brushed Nickel": ("brushed nickel", "nickel", "satin nickel"),
    "Satin Nickel": ("satin nickel", "nickel"),
    "Oil Rubbed Bronze": ("oil rubbed bronze", "bronze", "orb"),
    "Polished Brass": ("brass", "gold"),
    "Brushed Gold": ("gold", "brushed gold", "brass"),
    "Matte Black": ("black", "matte black"),
    "Genuine Leather": ("leather", "real leather"),
    "Faux Leather": ("faux leather", "vegan leather", "pu leather"),
    "Solid Wood": ("wood", "solid wood", "wooden", "real wood"),
    "Manufactured Wood": ("wood", "wooden"),
    "Reclaimed Wood": ("reclaimed wood", "rustic wood"),
    "Polypropylene": ("polypropylene", "synthetic"),
    "Stainless Steel": ("stainless steel", "stainless"),
    "Black Stainless": ("black stainless",),
    "Memory Foam": ("memory foam", "foam"),
    "Gel Memory Foam": ("gel memory foam", "cooling foam"),
    "Mid-Century Modern": ("mid century modern", "mid century", "mcm", "midcentury"),
    "Farmhouse": ("farmhouse", "rustic farmhouse", "country"),
    "Bohemian": ("boho", "bohemian"),
    "Scandinavian": ("scandinavian", "nordic", "scandi"),
    "Coastal": ("coastal", "beach", "nautical"),
    "Glam": ("glam", "glamorous"),
    "California King": ("california king", "cal king"),
    "Counter Height": ("counter height", "counter"),
    "Bar Height": ("bar height", "30 inch"),
}

TYPO_RATE = 0.08
# Words shoppers add that say nothing about the product type: before and after it.
EXTRA_BEFORE = ("cheap", "best", "affordable", "nice", "sturdy", "cute", "durable", "new")
EXTRA_AFTER = ("for apartment", "on sale", "for home", "for small space", "clearance", "sale")
SYLLABLE_START = (
    "Al", "Bel", "Car", "Dar", "El", "Fen", "Gar", "Hal", "Is", "Jar", "Kel", "Lan", "Mar",
    "Nor", "Or", "Pem", "Quin", "Ros", "Sal", "Tam", "Ul", "Ver", "Wes", "Yar", "Zan", "Ash",
    "Brook", "Clay", "Dun", "Ever", "Fair", "Glen", "Har", "Iv", "Kings", "Lau", "Mer",
    "North", "Oak", "Pres", "Red", "Stan", "Thorn", "Win", "Wil", "Ham", "Ran", "Sel",
)  # fmt: skip
SYLLABLE_END = (
    "cott", "ley", "ton", "ford", "wood", "more", "by", "dale", "ville", "wick", "ham",
    "ridge", "field", "stead", "son", "ina", "ara", "ette", "ian", "o", "ell", "worth", "ing",
    "ard", "en", "a",
)  # fmt: skip
BRAND_SUFFIXES = (
    "Hill", "Design", "Home", "Row", "Studio", "Co.", "Living", "Furnishings", "Lane",
    "Manor", "Collective", "House", "Works", "Trading Co.", "& Co.", "Interiors", "Loft",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ClassSpec:
    """Everything the generator needs to know about one product class."""

    name: str
    family: _Family
    title_nouns: tuple[str, ...]
    query_nouns: tuple[str, ...]
    sizes: tuple[str, ...]
    category: str


def _singular(word: str) -> str:
    lowered = word.lower()
    if lowered.endswith(("ss", "us")):
        return word
    if lowered.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if lowered.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if lowered.endswith("s") and len(word) > 3:
        return word[:-1]
    return word


def _nouns_from_class_name(name: str) -> tuple[str, ...]:
    """Fallback for a class the table does not know: its parts, singular and lower-case."""
    parts = re.split(r"\s*(?:,|&|/|\band\b)\s*", name, flags=re.IGNORECASE)
    nouns = []
    for part in parts:
        words = part.strip().split()
        if words:
            nouns.append(" ".join([*words[:-1], _singular(words[-1])]).lower())
    return tuple(dict.fromkeys(n for n in nouns if n)) or (name.lower(),)


def _guess_family(name: str) -> str:
    lowered = name.lower()
    for keyword, family in (
        ("patio", "outdoor_furniture"), ("outdoor", "outdoor"), ("garden", "outdoor"),
        ("light", "lighting"), ("lamp", "lighting"), ("rug", "rugs"), ("bed", "beds"),
        ("mattress", "mattress"), ("sofa", "seating"), ("chair", "seating"),
        ("table", "tables"), ("kid", "kids"), ("bath", "bath"), ("shower", "bath"),
        ("kitchen", "kitchenware"), ("wall", "wall_decor"), ("storage", "storage"),
    ):  # fmt: skip
        if keyword in lowered:
            return family
    return "decor"


def _parse_class_table() -> dict[str, tuple[str, tuple[str, ...], tuple[str, ...], str | None]]:
    table = {}
    for line in _CLASS_TABLE.strip().splitlines():
        fields = [f.strip() for f in line.split(";")]
        nouns = tuple(n.strip() for n in fields[2].split(",") if n.strip())
        query_nouns = tuple(n.strip() for n in fields[3].split(",") if n.strip())
        size_set = fields[4] if len(fields) > 4 else None
        table[fields[0]] = (fields[1], nouns, query_nouns, size_set)
    return table


_KNOWN_CLASSES = _parse_class_table()


def class_spec(name: str) -> ClassSpec:
    if name in _KNOWN_CLASSES:
        family_key, nouns, query_nouns, size_override = _KNOWN_CLASSES[name]
    else:
        family_key, size_override = _guess_family(name), None
        nouns = query_nouns = _nouns_from_class_name(name)
    family = _FAMILIES[family_key]
    size_set = size_override or family.size_set
    sizes = () if size_set in (None, "none") else _SIZE_SETS[size_set]
    return ClassSpec(name, family, nouns, query_nouns, sizes, f"{family.path} / {name}")


def class_vocabulary(product_class: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(nouns titles use, words shoppers use) for a class: what keyword search must bridge."""
    spec = class_spec(product_class)
    return spec.title_nouns, spec.query_nouns


def load_classes(classes_path: Path | None = None) -> list[str]:
    """The class taxonomy: one class per line (default: WANDS's 188 classes)."""
    path = classes_path or shared_data_dir() / "wands" / "classes.txt"
    classes = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [c for c in classes if c]


def related_classes(product_class: str) -> frozenset[str]:
    """Closely related product types; a product of one of them is a Partial match."""
    return _RELATED.get(product_class, frozenset())


def _build_related() -> dict[str, frozenset[str]]:
    related: dict[str, set[str]] = {}
    for group in _RELATED_GROUPS:
        for name in group:
            related.setdefault(name, set()).update(g for g in group if g != name)
    return {name: frozenset(others) for name, others in related.items()}


_RELATED = _build_related()
